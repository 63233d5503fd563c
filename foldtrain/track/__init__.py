"""The tracking stage: MLflow runs, the results of a run, and its pictures."""
