"""The stages every pipeline string can name. Imported by the registry on first use."""

from __future__ import annotations

from typing import Any

from cascade.errors import CascadeError
from cascade.pipeline.base import Pipeline
from cascade.pipeline.registry import Context, register_stage


def _bm25(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    _no_positional("bm25", args)
    return ctx.index("bm25").bm25(**params)


def _rm3(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.retrieve.rm3 import RM3

    _no_positional("rm3", args)
    return RM3(ctx.index("rm3"), **params)


def _bm25_rm3(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.retrieve.rm3 import RM3

    _no_positional("bm25_rm3", args)
    index = ctx.index("bm25_rm3")
    shared = {k: params[k] for k in ("k1", "b") if k in params}
    return index.bm25(**shared) >> RM3(index, **params)


def _run(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.retrieve.run import RunStage

    if len(args) != 1:
        raise CascadeError("run needs one path: run(runs/file.trec)")
    return RunStage(ctx.path(str(args[0])), label=str(args[0]), **params)


def _dense(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.retrieve.dense import Dense

    _no_positional("dense", args)
    return Dense(ctx.index("dense"), progress=ctx.progress("encoding documents"), **params)


def _dense_rerank(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.rerank.dense_rerank import DenseRerank

    _no_positional("dense_rerank", args)
    return DenseRerank(ctx.index("dense_rerank"), progress=ctx.progress("encoding documents"), **params)


def _maxsim(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.rerank.maxsim import MaxSim

    _no_positional("maxsim", args)
    return MaxSim(ctx.index("maxsim"), progress=ctx.progress("encoding document tokens"), **params)


def _sparse(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.retrieve.learned_sparse import build_sparse_stage

    return build_sparse_stage(ctx, *args, **params)


def _cross_encoder(ctx: Context, *args: Any, **params: Any) -> Pipeline:
    from cascade.rerank.cross_encoder import build_cross_encoder_stage

    return build_cross_encoder_stage(ctx, *args, **params)


def _fusion(method: str):  # type: ignore[no-untyped-def]
    def build(ctx: Context, *inputs: Pipeline, **params: Any) -> Pipeline:
        from cascade.pipeline.operators import Fuse

        if not inputs:
            raise CascadeError(f"{method} needs at least one pipeline to fuse")
        return Fuse(method, list(inputs), params)

    return build


def _no_positional(name: str, args: tuple[Any, ...]) -> None:
    if args:
        raise CascadeError(f"{name} takes only name=value parameters")


register_stage("bm25", _bm25, help="BM25 from the index (k1, b, k)")
register_stage("rm3", _rm3, help="RM3 expansion of the incoming candidates, then BM25 (fb_docs, fb_terms, orig_weight)")
register_stage("bm25_rm3", _bm25_rm3, help="bm25 >> rm3")
register_stage("dense", _dense, help="dense retrieval with a bi-encoder (model=minilm|mpnet|path, method=exact|hnsw, k)")
register_stage("dense_rerank", _dense_rerank, help="rescore candidates with a bi-encoder's dense vectors (model)")
register_stage("maxsim", _maxsim, help="late-interaction MaxSim rerank over token vectors, rank-safe pruning (model, prune)")
register_stage("sparse", _sparse, help="SPLADE learned sparse first stage (mode=encoded|inference_free, model, k)")
register_stage("cross_encoder", _cross_encoder,
               help="rerank candidates with a cross-encoder (model=DIR or hub id, batch_size, max_length, k)")
register_stage("run", _run, help="a stored TREC run: run(path)")
for _method, _help in (("rrf", "reciprocal rank fusion (k)"), ("combsum", "CombSUM (norm)"),
                       ("combmnz", "CombMNZ (norm)"), ("linear", "weighted linear combination (norm)")):
    register_stage(_method, _fusion(_method), help=_help, takes_pipelines=True)
