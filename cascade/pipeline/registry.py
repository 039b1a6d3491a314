"""Names the pipeline grammar knows, and the context stages are built in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cascade.errors import CascadeError

if TYPE_CHECKING:
    from cascade.index.index import Index
    from cascade.pipeline.base import Pipeline


@dataclass
class Context:
    """What stages need to be built: an index (opened or built on first use), a base dir."""

    index_provider: Callable[[], "Index"] | None = None
    root: Path | None = None  # relative paths in stage arguments resolve against this too
    _index: "Index | None" = field(default=None, repr=False)
    # long stage work (e.g. encoding a collection) reports (label, done, total or None) here
    on_progress: Callable[[str, int, int | None], None] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, index: "Index | None" = None, root: Path | str | None = None) -> "Context":
        ctx = cls(root=Path(root) if root is not None else None)
        ctx._index = index
        return ctx

    def index(self, stage: str) -> "Index":
        if self._index is None:
            if self.index_provider is None:
                raise CascadeError(f"stage {stage!r} needs an index; pass one (Python: index=..., CLI: --index)")
            self._index = self.index_provider()
        return self._index

    def progress(self, label: str) -> Callable[[int], None] | None:
        """A progress callback for work over the whole collection, or None when nobody listens."""
        hook = self.on_progress
        if hook is None:
            return None
        total = self._index.n_docs if self._index is not None else None
        return lambda done: hook(label, done, total)

    def has_index(self) -> bool:
        return self._index is not None or self.index_provider is not None

    def path(self, value: str) -> Path:
        """``value`` as given if it exists, else relative to ``root``."""
        p = Path(value).expanduser()
        if not p.exists() and self.root is not None and (self.root / p).exists():
            return self.root / p
        return p


StageFactory = Callable[..., "Pipeline"]


@dataclass(frozen=True)
class StageEntry:
    name: str
    build: StageFactory  # build(ctx, *positional, **params) -> Pipeline
    help: str = ""
    takes_pipelines: bool = False  # positional arguments are pipelines (fusion), not values


_STAGES: dict[str, StageEntry] = {}


def register_stage(name: str, build: StageFactory, *, help: str = "", takes_pipelines: bool = False,
                   replace: bool = False) -> None:
    """Make ``name`` usable in pipeline strings; ``build(ctx, *args, **params)`` makes the stage."""
    if not name.isidentifier():
        raise CascadeError(f"stage name {name!r} must be an identifier")
    if name in _STAGES and not replace:
        raise CascadeError(f"stage {name!r} is already registered")
    _STAGES[name] = StageEntry(name, build, help, takes_pipelines)


def stage_entry(name: str) -> StageEntry | None:
    _load_builtins()
    return _STAGES.get(name)


def stage_names() -> list[str]:
    _load_builtins()
    return sorted(_STAGES)


_loaded = False


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from cascade.pipeline import builtins  # noqa: F401  (registers on import)

    from importlib.metadata import entry_points

    for ep in entry_points(group="cascade.stages"):  # plugins: name = "module:register_function"
        try:
            ep.load()()
        except Exception as exc:  # a broken plugin must not break every pipeline
            import warnings

            warnings.warn(f"cascade stage plugin {ep.name!r} failed to load: {exc}", stacklevel=2)
