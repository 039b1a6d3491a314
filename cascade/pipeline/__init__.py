"""Pipelines as strings and their machinery above the core: the parser, the built-in stage
loader, function stages and the on-disk stage cache. The node algebra, the registry and the
executor are in :mod:`cascade.core`."""
