"""A preload module that cannot be imported."""

raise ImportError("model weights m-42 not found")
