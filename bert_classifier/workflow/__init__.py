"""The run_classifier pipeline: features, the training loop and its strategies, forward-only steps, output files."""
