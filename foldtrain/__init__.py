"""foldtrain: person-grouped stratified k-fold training of timm classifiers with Accelerate and MLflow."""

__version__ = "0.1.0"
