"""Base models: the catalog of the bundled SmolLM2, local Hugging Face folders and hub ids, and
loading them (catalog).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
