"""Configuration: the keys and their domains (`schema`), and how files and overrides become a `Config` (`load`)."""

from foldtrain.config.load import (
    ConfigError,
    build_config,
    cache_root,
    dump,
    fits_all_data,
    flatten,
    image_hw,
    keys,
    replace,
    to_dict,
)
from foldtrain.config.schema import Config

__all__ = ["Config", "ConfigError", "build_config", "cache_root", "dump", "fits_all_data", "flatten", "image_hw",
           "keys", "replace", "to_dict"]
