"""Metadata filters: expressions over the fields declared at index time, applied inside retrieval.

``compile_filter(where, index.manifest.filter_fields)`` turns a filter string (see
:mod:`cascade.filters.parse`, which holds it) or an expression built with :class:`F` into a checked
:class:`~cascade.filters.expr.Expr`; ``Index.allowed_docs(where)`` evaluates it per segment.
"""

from __future__ import annotations

from cascade.filters.expr import Expr, F
from cascade.filters.parse import FilterSyntaxError, compile_filter, parse_filter

__all__ = ["Expr", "F", "FilterSyntaxError", "compile_filter", "parse_filter"]
