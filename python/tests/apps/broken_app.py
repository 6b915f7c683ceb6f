"""Fails while being imported."""

raise RuntimeError("this module cannot be imported")
