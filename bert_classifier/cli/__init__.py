"""What only command-line scripts need: the environment set before TensorFlow, flags, errors."""
