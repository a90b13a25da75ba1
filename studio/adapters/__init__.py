"""Adapters as artifacts: what made them and how they did (registry), where they came from
(lineage), adapters trained elsewhere (imports), the cards handed out with them (cards), the one a
team has chosen to use (in_use).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
