"""Fusion methods, one file each; the pipeline grammar finds them here by name."""

from cascade.fuse import combmnz, combsum, linear, rrf
from cascade.fuse.base import FusionMethod

FUSION_METHODS: dict[str, FusionMethod] = {
    m.name: m for m in (rrf.METHOD, combsum.METHOD, combsum.SUM_METHOD, combmnz.METHOD, linear.METHOD)
}

__all__ = ["FUSION_METHODS", "FusionMethod"]
