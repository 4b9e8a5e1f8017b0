"""Checks that run before any work: inputs, checkpoints, output folders, one run per folder."""
