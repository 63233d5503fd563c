"""Searching the recipe on the folds (`python -m foldtrain.tune`): an Optuna study whose trials are k-fold runs.

- `space`: the search space file, checked against the config schema before a study starts;
- `__main__`: the CLI, a trial as a run through `accelerate launch`, resume and parallel workers on one storage;
- `trial`: the training side, a fold-loop hook that reports to the trial and stops a pruned run;
- `pruning`: the first fold's curve against earlier trials, then fold F1s paired with the best trial;
- `report`: study.json, best.yaml and the selection-corrected estimate.
"""
