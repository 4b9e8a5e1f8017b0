"""The run_classifier pipeline: features, the training loop and its distribution strategies,
forward-only steps (eval, predict, encode), output files."""
