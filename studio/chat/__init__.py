"""Chat with models: one base model in memory serving many adapters, answers streamed (server).

Kept free of imports, so that importing one module of the package loads only what that module needs.
"""
