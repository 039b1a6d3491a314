"""Prompt templates: files shipped in ``cascade/llm/prompts/``, or a user's file in their place.

A template is text with ``{name}`` fields (``{query}``, ``{passage}``, ``{passages}``, ``{n}``,
``{max_grade}``); literal braces are written ``{{`` and ``}}``. A passage is cut to
``max_words`` words before it is put in.

>>> template("pointwise_yesno").count("{query}")
1
>>> fill(template("listwise"), query="q", passages="[1] a", n=1).startswith("Here are 1 passages")
True
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from cascade.core.errors import CascadeError


def template(name: str, override: str | None = None, *, package: str = "cascade.llm") -> str:
    """The template ``name`` shipped in ``package`` (``prompts/<name>.txt``), or the file at ``override``."""
    if override:
        path = Path(override).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as err:
            raise CascadeError(f"prompt template {path} cannot be read: {err.strerror or err}") from None
    return resources.files(package).joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")


def fill(text: str, **fields: object) -> str:
    """``text`` with its fields filled; a field the template names but the stage lacks is an error."""
    try:
        return text.format(**fields)
    except KeyError as err:
        raise CascadeError(f"prompt template names the field {err}, which this stage does not fill; "
                           f"it fills: {', '.join(sorted(fields))}") from None
    except (IndexError, ValueError) as err:
        raise CascadeError(f"prompt template is malformed ({err}); write literal braces as {{{{ and }}}}") from None


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def clip(text: str, max_words: int) -> str:
    """The first ``max_words`` words of ``text``, whitespace collapsed."""
    words = text.split()
    return " ".join(words[:max_words])
