"""Deleting with lineage kept (dependents, deleting) and disk space (disk): what the Storage tab and
`python -m studio delete` / `python -m studio storage` do. The public face is these modules."""
