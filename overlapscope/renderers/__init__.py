"""One renderer per output format; each takes an analysis result and returns or prints it."""
