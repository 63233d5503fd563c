"""The data stage: tables and labels, folds, the decoded image cache, transforms and mixing, loaders."""
