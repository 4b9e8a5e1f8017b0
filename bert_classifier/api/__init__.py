"""The Python API: Classifier and Encoder (inference), the SavedModel modules (serving)."""
