"""Representation builders: how each kind of stored representation is made for one segment.

An index stores representations of kinds the index layer cannot compute itself (bi-encoder
vectors need a neural model, HNSW graphs need faiss, ...), yet every commit that writes a
segment must give it every representation the manifest lists: an add or update encodes its new
documents, a merge rebuilds derived kinds for the merged segment (see
:mod:`cascade.index.representations`). So the layers that know how register a builder per kind
under the entry-point group ``cascade.representations`` (``pyproject.toml``; a plugin package
can add its own kinds the same way)::

    [project.entry-points."cascade.representations"]
    biencoder = "cascade.models.stored:BUILDER"

and the index layer looks a kind's builder up when it needs one, never importing the module
that provides it. A builder that cannot run in this process (its model library is not
installed) says why *before* any work starts, so a commit is refused with one clear line
rather than storing a segment without the representation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.core.errors import CascadeError

if TYPE_CHECKING:
    from cascade.index.segment import Segment

GROUP = "cascade.representations"
ProgressFn = Callable[[int], None]
# for messages when a kind has no builder: the extra that brings the built-in one
EXTRAS = {"biencoder": "neural", "sparse": "neural", "token-ids": "neural", "hnsw": "neural",
          "maxsim-bounds": "neural"}


@dataclass
class BuildContext:
    """What a builder may need beyond the segment: the index's indexed fields, every
    representation spec of the index (a derived kind reads the spec it is built ``of``), and
    a progress callback counting the segment's documents done."""

    fields: Sequence[str]
    representations: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: ProgressFn | None = None


BuildFn = Callable[["Segment", str, dict[str, Any], BuildContext], dict[str, np.ndarray]]


@dataclass(frozen=True)
class RepresentationBuilder:
    """``build(segment, name, spec, context) -> {part: array}`` makes representation ``name``
    (with ``spec``) for every document of ``segment``, row-aligned; ``missing(spec)`` says what
    this process lacks to run it (e.g. "torch is not installed (pip install
    'cascade-ir[neural]')"), or None when it can run. ``encodes`` is True for kinds that run a
    model over the documents' text (progress then counts documents)."""

    build: BuildFn
    missing: Callable[[dict[str, Any]], str | None] = lambda spec: None
    encodes: bool = False


_LOADED: dict[str, RepresentationBuilder] = {}


def builder(kind: str) -> RepresentationBuilder:
    """The registered builder of ``kind``; a :class:`CascadeError` when there is none or it
    cannot be loaded."""
    found = _LOADED.get(kind)
    if found is not None:
        return found
    eps = [ep for ep in entry_points(group=GROUP) if ep.name == kind]
    if not eps:
        extra = EXTRAS.get(kind)
        hint = (f"Cascade's own builder is registered on install (pip install 'cascade-ir[{extra}]', or "
                "pip install -e . in a checkout)" if extra else
                "it was perhaps written by a newer Cascade or a plugin that is not installed here")
        raise CascadeError(f"no builder for representation kind {kind!r} is registered "
                           f"(entry points {GROUP}); {hint}")
    try:
        loaded = eps[0].load()
    except ImportError as err:
        raise CascadeError(f"the builder of representation kind {kind!r} ({eps[0].value}) cannot be loaded: "
                           f"{err}") from None
    if not isinstance(loaded, RepresentationBuilder):
        raise CascadeError(f"entry point {GROUP}:{kind} ({eps[0].value}) is not a RepresentationBuilder")
    _LOADED[kind] = loaded
    return loaded


def require(name: str, spec: dict[str, Any], why: str) -> RepresentationBuilder:
    """The builder of representation ``name`` (``spec``), able to run in this process; else one
    :class:`CascadeError` line naming the representation, ``why`` it is needed, and what to
    install."""
    kind = str(spec.get("kind"))
    try:
        found = builder(kind)
        lacking = found.missing(spec)
    except CascadeError as err:
        lacking = str(err)
    if lacking is not None:
        raise CascadeError(f"{why} needs representation {name!r} (kind {kind}) built for it, and this process "
                           f"cannot build it: {lacking}; nothing was changed")
    return found


def build_order(specs: dict[str, dict[str, Any]]) -> list[str]:
    """Representation names with each one after the one it is built ``of`` (its spec's ``of``)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise CascadeError(f"representation {name!r} is built of itself (a cycle of 'of' specs)")
        state[name] = "visiting"
        dep = specs[name].get("of")
        if isinstance(dep, str) and dep in specs:
            visit(dep)
        state[name] = "done"
        order.append(name)

    for name in sorted(specs):
        visit(name)
    return order
