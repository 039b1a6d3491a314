"""The top-level API: light to import, names that stay what they are."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_is_light() -> None:
    code = ("import sys, time; t = time.perf_counter(); import cascade; dt = time.perf_counter() - t; "
            "import json; print(json.dumps({'seconds': dt, 'modules': sorted(sys.modules)}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    heavy = {"numpy", "numba", "torch", "transformers", "ir_measures", "scipy", "typer", "rich"}
    assert not heavy & {m.split(".")[0] for m in out["modules"]}
    assert out["seconds"] < 0.3


def test_subpackage_imports_do_not_shadow_functions() -> None:
    import cascade
    import cascade.evaluation.experiment  # noqa: F401
    import cascade.pipeline.stage  # noqa: F401

    assert callable(cascade.evaluate) and cascade.evaluate.__module__ == "cascade.evaluation.metrics"
    assert callable(cascade.stage) and cascade.stage.__module__ == "cascade.pipeline.function"


def test_every_export_resolves() -> None:
    import cascade

    for name in cascade.__all__:
        assert getattr(cascade, name) is not None, name


def test_open_and_first_search_need_no_compiled_kernels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cascade

    cascade.Index.build([cascade.Doc(str(i), f"word{i} common text") for i in range(100)], tmp_path / "i")
    code = ("import sys, time, json; t = time.perf_counter(); import cascade; "
            f"hits = cascade.Index.open({str(tmp_path / 'i')!r}).bm25().search('word7 common', k=3); "
            "print(json.dumps({'seconds': time.perf_counter() - t, 'top': hits[0].id, "
            "'numba': 'numba' in sys.modules}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["top"] == "7" and out["numba"] is False
    assert out["seconds"] < 1.0
