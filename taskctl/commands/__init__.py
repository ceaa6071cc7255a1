"""One thin module per command group: read options, call one operation, return a model."""
