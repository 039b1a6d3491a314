"""LLM backends (llama-cpp, OpenAI-compatible HTTP, transformers), a call cache and LLM rerankers.

Nothing here imports an LLM library at import time; each backend imports its own when opened.
"""

from __future__ import annotations

from cascade.llm.backend import Backend, Generation, Usage, open_backend

__all__ = ["Backend", "Generation", "Usage", "open_backend"]
