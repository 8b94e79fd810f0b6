"""The model runtime: chat engines and model files."""
