"""Trace readers and the columnar trace model they all produce."""
