"""Marks among a query batch's term numbers, shared by the tokenizer side and the numba kernels
(a module of its own so that importing them loads no compiled code)."""

NO_TERM = -1  # a token that is a stopword or not in the index
QUERY_END = -2  # the mark between two queries' tokens
