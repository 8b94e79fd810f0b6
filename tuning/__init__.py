"""Offline fine-tuning: LoRA training with torch + transformers + peft, export to GGUF."""
