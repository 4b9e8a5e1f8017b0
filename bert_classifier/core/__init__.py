"""Ground support modules: checkpoint names, fused ops, precision, metrics, progress, files."""
