"""Errors Cascade raises for problems a user can fix.

The CLI prints these as one line (no traceback); anything else is a bug in Cascade.
"""

from __future__ import annotations


class CascadeError(Exception):
    """Base class for every error caused by user input or environment, not by a bug."""


class DataError(CascadeError):
    """Bad input data: names the file and, where it applies, the line."""

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class BadIndexError(CascadeError):
    """A missing, damaged or incompatible index directory."""


class NotOffered(CascadeError):
    """A stage argument that whoever builds the pipeline does not offer (a server refusing a file
    on its disk or a model it did not list); see ``Context.check_arguments``."""


class MissingDependency(CascadeError):
    """An optional dependency is not installed; the message says how to install it."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        hint = f"pip install 'cascade-ir[{extra}]'" if extra else f"pip install {package}"
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"{package} is needed{what}: {hint}")
