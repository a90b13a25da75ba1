"""How much an adapter helps: held-out loss and answers scored against references (measure, scores), what it
forgot (forgetting), the plain verdict (verdict), adapters side by side (compare).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
