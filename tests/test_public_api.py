"""The top-level API: light to import, names that stay what they are."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_is_light() -> None:
    code = ("import sys, time; t = time.perf_counter(); import cascade; dt = time.perf_counter() - t; "
            "import json; print(json.dumps({'seconds': dt, 'modules': sorted(sys.modules)}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    heavy = {"numpy", "numba", "torch", "transformers", "ir_measures", "scipy", "typer", "rich", "llama_cpp", "httpx", "ray"}
    assert not heavy & {m.split(".")[0] for m in out["modules"]}


def test_subpackage_imports_do_not_shadow_functions() -> None:
    import cascade
    import cascade.core.nodes  # noqa: F401
    import cascade.evaluation.experiment  # noqa: F401

    assert callable(cascade.evaluate) and cascade.evaluate.__module__ == "cascade.evaluation.metrics"
    assert callable(cascade.stage) and cascade.stage.__module__ == "cascade.pipeline.function"


def test_every_export_resolves() -> None:
    import cascade

    for name in cascade.__all__:
        assert getattr(cascade, name) is not None, name


def _first_search(index: str, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    code = ("import sys, json; import cascade; "
            f"hits = cascade.BM25(cascade.Index.open({index!r})).search('word7 common', k=3); "
            "print(json.dumps({'top': [h.id for h in hits], 'numba': 'numba' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout)


def test_a_cold_first_search_needs_no_compiled_kernels_and_a_warm_one_uses_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    import cascade
    from cascade.retrieve import impact_search

    cascade.Index.build([cascade.Doc(str(i), f"word{i} common text") for i in range(100)], tmp_path / "i")
    index = str(tmp_path / "i")
    cold = _first_search(index, {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "empty-numba-cache")})
    assert cold["top"][0] == "7" and cold["numba"] is False  # nothing compiled: plain numpy answers
    impact_search.warm_up()  # compiles (or loads) the kernels into numba's on-disk cache
    assert impact_search.kernels_cached()
    warm = _first_search(index, {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"})
    assert warm == {"top": cold["top"], "numba": True}  # the cached kernels answer, identically
