"""Training's speed paths, each checking where it applies: padding-free packing and bf16-products
attention (packing), length-grouped batches (batching), fused LoRA with one product for sibling A's
(lora_fused), bf16 activations and fused norms (bf16_activations). train.recipe decides which
apply.

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
