"""The code file of the logged fold-ensemble model ("models from code"): MLflow runs it when it loads the model."""

from mlflow.models import set_model

from foldtrain.track.served_model import FoldEnsemblePyfunc

set_model(FoldEnsemblePyfunc())
