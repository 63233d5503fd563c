"""The training stage: the loop, optimizers and schedules, fitting one fold, the CV strategies, checkpoint
policy and resume state."""
