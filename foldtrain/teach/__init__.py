"""Runs taught by an earlier run's fold models, without leaking across folds.

- `teacher_run`: open a finished teacher run, check that it split the data exactly as the student does, and hand
  out the models that may teach each student fit (fold k: the teacher's fold k only; the all-data fit: every fold);
- `distill`: the teacher's TTA-averaged scores on the student's own augmented batch, and the KL + hard-label loss.
"""
