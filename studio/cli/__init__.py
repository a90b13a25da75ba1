"""`python -m studio ...`: each command opens the store or settings and calls one studio function
(commands; feedback's commands in feedback; people and the activity log in people).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
