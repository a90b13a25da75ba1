"""Data in: files read into rows (readers), instruction rows mapped, validated, previewed and saved
(instructions), preference pairs (preferences), prompt templates and rendering (prompts), blends of
datasets (blending).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
