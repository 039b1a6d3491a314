"""What an encoder returns, whichever runtime (torch or ONNX) produced it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Encoded:
    """Encoder output for n texts: dense[n, dim] float32 (unit length) and, when asked, the
    token vectors of text i as token_vectors[token_offsets[i]:token_offsets[i + 1]] (float16)."""

    dense: np.ndarray
    token_offsets: np.ndarray | None = None
    token_vectors: np.ndarray | None = None

    def tokens_of(self, i: int) -> np.ndarray:
        assert self.token_offsets is not None and self.token_vectors is not None
        return self.token_vectors[self.token_offsets[i]:self.token_offsets[i + 1]]
