"""The failures a user can cause and fix, and how each is said in one line.

Entry points catch `EXPECTED` and print the message: no traceback for bad data, a taken run folder, a full
disk or a broken weights file. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from foldtrain.config import ConfigError
from foldtrain.data.folds import FoldError
from foldtrain.data.images import ImageReadError
from foldtrain.data.paths import PathEscapeError
from foldtrain.data.tables import LayoutError
from foldtrain.files import StorageError
from foldtrain.model.weights import WeightsError
from foldtrain.run.folder import RunFolderError
from foldtrain.train.loop import NonFiniteLossError
from foldtrain.train.state import StateError
from foldtrain.user_error import UserError

# foldtrain's own error types only: a bare ValueError or FileNotFoundError from a library or a bug keeps its traceback.
EXPECTED = (ConfigError, FoldError, ImageReadError, PathEscapeError, LayoutError, StorageError, WeightsError,
            RunFolderError, NonFiniteLossError, StateError, UserError)

