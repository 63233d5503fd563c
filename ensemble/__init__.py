"""Fold ensemble with test-time augmentation: averages fold logits into a submission."""
