"""The model stage: the timm factory, heads as objects, losses, weights files, TTA."""
