"""People: who may do what (roles), the accounts of a shared studio (users), and who did what (activity).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
