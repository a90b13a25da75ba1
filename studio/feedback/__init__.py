"""Feedback from the Chat tab: votes that keep what they judged and corrections (items), and the
A/B ranking (votes).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
