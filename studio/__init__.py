"""Adapter Studio: fine-tune open LLMs with LoRA/QLoRA by clicking, not coding."""
