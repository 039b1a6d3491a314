"""The names pipeline strings know: every stage and fusion method registers itself here.

A stage module calls :func:`register_stage` when it is imported, declaring its parameters
(:class:`~cascade.core.params.ParamInfo`); :meth:`StageSpec.make` checks what a user wrote
against them before building the stage, so every stage reports bad parameters the same way.
:mod:`cascade.pipeline.builtins` imports the built-in stage modules (and plugins from the
``cascade.stages`` entry point) before a pipeline string is parsed.

>>> from cascade.core.params import ParamInfo
>>> register_stage("halving", lambda ctx, factor: ..., params=(ParamInfo("factor", float, 0.5, "scale"),),
...                help="scale scores", replace=True)
>>> lookup("halving").make(Context(), [], {"factor": "x"})
Traceback (most recent call last):
...
cascade.core.errors.CascadeError: halving: factor must be a number (got 'x')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cascade.core.errors import CascadeError
from cascade.core.params import ParamInfo, check_params

if TYPE_CHECKING:
    from cascade.core.nodes import Pipeline

ProgressHook = Callable[[str, int, "int | None"], None]  # (label, done, total or None)


@dataclass
class Context:
    """What stages need to be built: an index (opened or built on first use), a base dir."""

    index_provider: Callable[[], Any] | None = None
    root: Path | None = None  # relative paths in stage arguments resolve against this too
    _index: Any = field(default=None, repr=False)
    # long stage work (e.g. encoding a collection) reports (label, done, total or None) here
    on_progress: ProgressHook | None = field(default=None, repr=False)
    # stage name -> parameter values used where a pipeline string does not set them (`cascade eval --k1`)
    stage_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    # called with (stage name, the parameters its text gave) before a stage is built; raises
    # CascadeError for what the caller does not offer (the server: files and models it did not list)
    check_arguments: Callable[[str, dict[str, Any]], None] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, index: Any = None, root: Path | str | None = None) -> "Context":
        ctx = cls(root=Path(root) if root is not None else None)
        ctx._index = index
        return ctx

    def index(self, stage: str) -> Any:
        """The index stages of this context search (an :class:`~cascade.Index` snapshot)."""
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

    def opened_index(self) -> Any:
        """The index if it was given or opened already (None otherwise: nothing opens it here)."""
        return self._index

    def has_index(self) -> bool:
        return self._index is not None or self.index_provider is not None

    def path(self, value: str) -> Path:
        """``value`` as given if it exists, else relative to ``root``."""
        p = Path(value).expanduser()
        if not p.exists() and self.root is not None and (self.root / p).exists():
            return self.root / p
        return p


StageBuilder = Callable[..., "Pipeline"]


@dataclass(frozen=True)
class StageSpec:
    """A registered name: how to build it and what it takes.

    ``build(ctx, *inputs, **params)``; with declared ``params`` it receives every declared
    parameter, checked (defaults filled in). ``positional`` names the parameters that may be
    written without ``name=`` (``run(runs/a.trec)``); ``takes_pipelines`` marks fusions,
    whose positional arguments are pipelines. ``params=None`` passes parameters unchecked
    (a function stage with free-form keyword arguments)."""

    name: str
    build: StageBuilder
    params: tuple[ParamInfo, ...] | None = None
    help: str = ""
    positional: tuple[str, ...] = ()
    takes_pipelines: bool = False

    def check(self, args: Sequence[Any], params: dict[str, Any]) -> dict[str, Any]:
        """The checked keyword arguments for ``name(args..., params...)`` (fusion inputs aside)."""
        if self.takes_pipelines:
            return self._checked(params)
        if len(args) > len(self.positional):
            takes = f"takes {', '.join(self.positional)} without a name" if self.positional else \
                "takes only name=value parameters"
            raise CascadeError(f"{self.name} {takes}")
        named = dict(zip(self.positional, args))
        for name in named:
            if name in params:
                raise CascadeError(f"{self.name}: {name} given twice")
        return self._checked({**named, **params})

    def make(self, ctx: Context, args: Sequence[Any], params: dict[str, Any]) -> "Pipeline":
        """The stage for ``name(args..., params...)``, with ``ctx.stage_defaults`` for this name
        filling in what was not written; CascadeError for what does not fit."""
        written = set(self.positional[:len(args)]) | set(params)
        if ctx.check_arguments is not None:
            given = params if self.takes_pipelines else {**dict(zip(self.positional, args)), **params}
            ctx.check_arguments(self.name, given)
        defaults = {k: v for k, v in ctx.stage_defaults.get(self.name, {}).items() if k not in written}
        checked = self.check(args, {**defaults, **params})
        return self.build(ctx, *args, **checked) if self.takes_pipelines else self.build(ctx, **checked)

    def _checked(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params) if self.params is None else check_params(self.name, self.params, params)


_STAGES: dict[str, StageSpec] = {}


def register_stage(name: str, build: StageBuilder, *, params: Sequence[ParamInfo] | None = None, help: str = "",
                   positional: Sequence[str] = (), takes_pipelines: bool = False, replace: bool = False) -> None:
    """Make ``name`` usable in pipeline strings (see :class:`StageSpec`). Without ``params`` the
    builder gets whatever parameters were written and checks them itself."""
    if not name.isidentifier():
        raise CascadeError(f"stage name {name!r} must be an identifier")
    if name in _STAGES and not replace:
        raise CascadeError(f"stage {name!r} is already registered")
    _STAGES[name] = StageSpec(name, build, None if params is None else tuple(params), help, tuple(positional),
                              takes_pipelines)


def lookup(name: str) -> StageSpec | None:
    return _STAGES.get(name)


def stage_names() -> list[str]:
    return sorted(_STAGES)


def stage_specs() -> list[StageSpec]:
    return [_STAGES[n] for n in sorted(_STAGES)]
