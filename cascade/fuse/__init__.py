"""Fusion methods, one file each; each registers itself as a stage taking pipelines
(``rrf(a, b, k=60)``). ``a + b`` (CombSUM of raw scores) is the core's :data:`~cascade.core.nodes.SUM`."""

from __future__ import annotations

from typing import Any

from cascade.core.nodes import Fuse, FusionMethod, Pipeline
from cascade.core.registry import Context, register_stage


def register_fusion(method: FusionMethod) -> None:
    """Make ``method`` usable in pipeline strings as ``name(pipeline, ..., param=value)``."""

    def build(ctx: Context, *inputs: Pipeline, **params: Any) -> Pipeline:
        return Fuse(method, list(inputs), params)

    register_stage(method.name, build, params=method.params, help=method.help, takes_pipelines=True, replace=True)
