"""The transformers backend with a tiny randomly initialised Llama and a tokenizer with a chat
template, saved to a temp dir: generation, label log-probabilities, attention spans, and the
FIRST, pointwise and ICR stages on it (code paths only: a random model ranks at random)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from cascade.core.errors import CascadeError  # noqa: E402
from cascade.llm import open_backend  # noqa: E402
from cascade.llm.icr import ICR, layout  # noqa: E402

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TEXT = ["the cat sat on the mat", "dogs chase cats", "a recipe for cat food", "yes no maybe",
        "Here are some passages, each marked with a number in square brackets. Query: N/A"] * 20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny-llama")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                                bos_token="<|im_start|>", pad_token="<|im_end|>")
    fast.chat_template = TEMPLATE
    fast.save_pretrained(d)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=1024, eos_token_id=fast.eos_token_id,
                                      bos_token_id=fast.bos_token_id, pad_token_id=fast.pad_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def backend(model_dir: Path):  # type: ignore[no-untyped-def]
    return open_backend(f"transformers:{model_dir}", cache=False)


def test_generate_counts_tokens(backend) -> None:  # type: ignore[no-untyped-def]
    gens = backend.generate(["the cat", "dogs"], max_tokens=4)
    assert len(gens) == 2 and all(0 < g.completion_tokens <= 4 and g.prompt_tokens > 2 for g in gens)
    assert backend.usage.calls == 2


def test_label_logprobs_are_a_distribution_over_the_vocabulary(backend) -> None:  # type: ignore[no-untyped-def]
    (lp,) = backend.label_logprobs(["is the cat here?"], ["yes", "no", "A", "B"])
    assert set(lp) == {"yes", "no", "A", "B"} and all(v < 0 for v in lp.values())
    assert sum(np.exp(list(lp.values()))) < 1.0


def test_attention_per_span(backend) -> None:  # type: ignore[no-untyped-def]
    prompt, spans, q = layout("Passages:\n{passages}\nQuery: {query}", "cat food", ["the cat sat", "dogs chase"])
    tokens = backend.attention(prompt, spans, q)
    assert len(tokens) == 2 and all(len(t) > 0 and np.all(t > 0) for t in tokens)
    assert backend.usage.calls >= 1


def test_kept_passages_give_the_attention_of_a_full_pass(backend) -> None:  # type: ignore[no-untyped-def]
    """The second prompt reuses the first one's keys and values for the shared passages; its
    token attention must equal one forward pass over the whole prompt."""
    template = "Passages:\n{passages}\nFind what is relevant.\nQuery: {query}"
    passages = ["the cat sat on the mat", "dogs chase cats", "a recipe for cat food"]
    backend.attention(*layout(template, "cat food", passages))
    before = backend.usage.prompt_tokens
    prompt, spans, q = layout(template, "N/A", passages)
    kept = backend.attention(prompt, spans, q)
    text = backend.chat_text(prompt)
    enc = backend.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].numpy()
    base = text.find(prompt)
    scoring = np.flatnonzero(offsets[:, 1] > q[0] + base)
    assert backend.usage.prompt_tokens - before == len(scoring) < len(offsets) / 2  # only the scoring tokens ran
    with torch.inference_mode():
        out = backend.lm(enc["input_ids"], output_attentions=True)
    row = sum(a[0][:, scoring, :].float().sum(dim=0).mean(dim=0) for a in out.attentions).numpy()
    for (s, e), got in zip(spans, kept):
        want = row[np.flatnonzero((offsets[:, 0] < e + base) & (offsets[:, 1] > s + base))]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_icr_stage_two_passes_per_window(model_dir: Path, tmp_path: Path) -> None:
    from cascade.llm.cache import CachedBackend

    inner = open_backend(f"transformers:{model_dir}", cache=False)
    cached = CachedBackend(inner, root=tmp_path)
    stage = ICR(None, backend=cached, window=3, stride=2)
    passages = ["the cat sat on the mat", "dogs chase cats", "a recipe for cat food", "yes no maybe"]
    scores = stage.rank("cat food", passages)
    assert sorted(scores.tolist()) == [1, 2, 3, 4]
    assert cached.usage.calls == 4 and cached.usage.cached_calls == 0  # 2 windows x (query, N/A)
    ICR(None, backend=cached, window=3, stride=2).rank("cat food", passages)
    assert cached.usage.cached_calls == 4


def test_first_and_pointwise_on_transformers(backend) -> None:  # type: ignore[no-untyped-def]
    from cascade.llm.first import First
    from cascade.llm.pointwise import LLMPointwise

    passages = ["the cat sat", "dogs chase cats", "cat food"]
    assert sorted(First(None, backend=backend, window=3).rank("cat", passages).tolist()) == [1, 2, 3]
    assert LLMPointwise(None, backend=backend, mode="graded").rank("cat", passages).shape == (3,)


def test_icr_template_must_put_the_query_last() -> None:
    with pytest.raises(CascadeError, match="query last"):
        layout("{query}\n{passages}", "q", ["a"])


def test_a_missing_model_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="cannot load"):
        open_backend(f"transformers:{tmp_path / 'nothing'}", cache=False)
