"""Training recipes, ONNX conversion with parity checks, and the model-version layout."""
