"""The assignment's studies and the training-quality report (docs/training.md,
docs/assumptions.md, docs/balance.md), with the independent judge of generated digits."""
