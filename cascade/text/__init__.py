"""Text analysis."""

from cascade.text.analyzer import Analyzer

__all__ = ["Analyzer"]
