"""Training: every setting (spec), the plan from the data and the machine (plan, estimate), sweeps,
the recipe setup -> train -> save (recipe) with the studio's SFTTrainer (trainer), preference
objectives (preference), continuing an adapter (continuation), a run's health, and the token cache.
Its speed paths live in train.speed.

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
