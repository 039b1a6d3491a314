"""Writing per-segment filter columns: one file per declared field (kinds and value rules in
:mod:`cascade.filters.columns`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from cascade.core.errors import CascadeError
from cascade.filters.columns import INT_MISSING, coerce


class ColumnWriter:
    """Collects the declared fields of documents as they are added to a segment."""

    def __init__(self, spec: Mapping[str, str]) -> None:
        self.spec = dict(spec)
        self.values: dict[str, list[Any]] = {name: [] for name in self.spec}

    def add(self, doc_id: str, meta: Mapping[str, Any]) -> None:
        for name, kind in self.spec.items():
            value = meta.get(name)
            if value is not None:
                try:
                    value = coerce(kind, value)
                except CascadeError as err:
                    raise CascadeError(f"document {doc_id!r}, filter field {name!r} ({kind}): {err}") from None
            self.values[name].append(value)

    def write(self, directory: Path) -> None:
        for name, kind in self.spec.items():
            values = self.values[name]
            if kind == "keyword":
                keys = sorted({v for v in values if v is not None})
                code = {k: i for i, k in enumerate(keys)}
                arr = np.array([-1 if v is None else code[v] for v in values], dtype=np.int32)
                (directory / f"col-{name}.keys.json").write_text(json.dumps(keys, ensure_ascii=False),
                                                                  encoding="utf-8")
            elif kind == "float":
                arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
            else:
                arr = np.array([INT_MISSING if v is None else v for v in values], dtype=np.int64)
            np.save(directory / f"col-{name}.npy", arr)
