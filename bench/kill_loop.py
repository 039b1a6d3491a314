"""Fault injection: SIGKILL an index writer at random moments during add, update, delete,
merge and (with a model) encoding, many times, and check after every kill that the index
opens, passes `cascade check`, and holds exactly the last committed state.

The writer is a forked child that runs a planned sequence of operations and reports each one
it finishes on a pipe. The parent knows the document set after every operation of the plan,
so after a kill the index must equal the state after the last reported operation, or after
the one in flight (killed between its commit and its report). The next child resumes from
whichever state was found.

With ``--model`` (a sentence-transformers directory; ``--tiny`` makes a random one-layer model)
the index is encoded: representation ``tiny`` (dense + token vectors) right after the build,
which every add and update then encodes in its own commit and every merge carries, and
``encode`` operations re-encode a second representation ``alt`` (spec changed each time, one
commit per segment). After each kill, every representation any segment lists must hold the
vectors of that segment's documents, and be present in every segment except while an
encoding of it was in flight (then the next run of that encoding must continue it). Files no
commit lists (orphans: what the killed writer had written) are counted after each kill; they
must be gone after the next commit or `cascade check --repair` (done every 10th kill).

    python bench/kill_loop.py --kills 1000          # writes bench/results/kill-loop-<date>.md
    python bench/kill_loop.py --kills 300 --tiny    # encoded indexes: encode and optimize too
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

WORDS = [f"w{i}" for i in range(300)]
FIELDS = {"year": "int", "lang": "keyword"}


def make_doc(rng: random.Random, doc_id: str):  # type: ignore[no-untyped-def]
    from cascade.core.types import Doc

    return Doc(doc_id, " ".join(rng.choices(WORDS, k=rng.randint(3, 30))),
               meta={"year": rng.randint(2000, 2019), "lang": rng.choice(["en", "de", "fr"])})


def plan(n_ops: int, seed: int, neural: bool = False) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """Operations and the live {id: text} after each (states[0]: the initial build). With
    ``neural`` the build is followed by encoding ``tiny``, and some operations re-encode ``alt``."""
    rng = random.Random(seed)
    next_id = 0
    initial = []
    for _ in range(60):
        initial.append(make_doc(rng, f"d{next_id}"))
        next_id += 1
    live = {d.id: d for d in initial}
    ops: list[tuple[str, Any]] = [("build", initial)]
    states = [{k: d.text for k, d in live.items()}]
    if neural:
        ops.append(("encode", ("tiny", 0)))
        states.append(states[-1])
    rounds = 0
    for _ in range(n_ops):
        r = rng.random()
        if neural and r < 0.12:
            rounds += 1
            ops.append(("encode", ("alt", rounds)))
            states.append(states[-1])
            continue
        if neural:
            r = rng.random()
        big = len(live) > 250
        if (r < 0.35 and not big) or len(live) < 20:
            batch = []
            for _ in range(rng.randint(3, 15)):
                batch.append(make_doc(rng, f"d{next_id}"))
                next_id += 1
            ops.append(("add", batch))
            live.update((d.id, d) for d in batch)
        elif r < 0.55:
            ids = rng.sample(sorted(live), min(len(live), rng.randint(1, 5))) + [f"d{next_id}"]
            next_id += 1
            batch = [make_doc(rng, i) for i in ids]
            ops.append(("update", batch))
            live.update((d.id, d) for d in batch)
        elif r < 0.75:
            ids = rng.sample(sorted(live), min(len(live) - 5, rng.randint(1, 20 if big else 6)))
            ops.append(("delete", ids))
            for i in ids:
                del live[i]
        elif r < 0.85:
            year = rng.randint(2000, 2019)
            lang = rng.choice(["en", "de", "fr"])
            ops.append(("delete_where", f'year = {year} AND lang = "{lang}"'))
            for i in [k for k, d in live.items() if d.meta["year"] == year and d.meta["lang"] == lang]:
                del live[i]
        else:
            ops.append(("merge", rng.random() < 0.5))
        states.append({k: d.text for k, d in live.items()})
    return ops, states


MODEL: list[str] = []  # the model of a neural run (set before the children fork)


def rep_spec(name: str, round_: int) -> dict[str, Any]:
    """``tiny``: dense + token vectors; ``alt``: dense only, its spec changed by each re-encoding."""
    if name == "tiny":
        return {"kind": "biencoder", "model": MODEL[0], "tokens": True}
    return {"kind": "biencoder", "model": MODEL[0], "tokens": False, "round": round_}


def run_op(path: Path, op: tuple[str, Any]) -> None:
    from cascade.index import representations as reps
    from cascade.index.index import Index
    from cascade.index.merge import TieredMergePolicy

    kind, arg = op
    if kind == "build":
        Index.build(arg, path, filter_fields=FIELDS, overwrite=True).close()
        return
    idx = Index.open(path, verify=False)
    try:
        if kind == "encode":  # one commit per segment; a rerun continues what a killed one began
            name, round_ = arg
            reps.add_representation(idx, name, rep_spec(name, round_), replace=True, reporter=reps.silent)
        elif kind == "add":
            idx.add(arg, merge=False)
        elif kind == "update":
            idx.update(arg, merge=False)
        elif kind == "delete":
            idx.delete(arg)
        elif kind == "delete_where":
            idx.delete(where=arg)
        else:
            idx.optimize(policy=None if arg else TieredMergePolicy(factor=3))
    finally:
        idx.close()


def child(path: Path, ops: list, start: int, wfd: int) -> None:
    """Run ops[start:], reporting each finished one; never returns."""
    try:
        if MODEL:  # torch's OpenMP thread pool does not survive fork: one thread in the child
            import torch

            torch.set_num_threads(1)
            torch.set_num_threads = lambda n: None  # the encoder asks for every core; not here
        for i in range(start, len(ops)):
            run_op(path, ops[i])
            os.write(wfd, f"{i}\n".encode())
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001  (a real failure: tell the parent)
        os.write(wfd, f"error {exc!r}\n".encode())
        os._exit(3)


def observed(path: Path) -> dict[str, str]:
    """Open (re-hashing every file) and read the live documents."""
    from cascade.index.index import Index

    idx = Index.open(path, verify=True)
    try:
        assert idx.verify() == []
        docs = {d.id: d.text for d in idx}
        assert idx.n_docs == len(docs)
        return docs
    finally:
        idx.close()


def rep_states(ops: list[tuple[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """The representation specs after each operation (complete in every segment)."""
    out, now = [], {}
    for kind, arg in ops:
        if kind == "build":
            now = {}
        elif kind == "encode":
            now = {**now, arg[0]: rep_spec(*arg)}
        out.append(dict(now))
    return out


class Reference:
    """Dense vectors of document texts, encoded once by the parent with the writer's model."""

    def __init__(self) -> None:
        self.vectors: dict[str, Any] = {}

    def __call__(self, texts: list[str]) -> Any:
        import numpy as np

        from cascade.models.encoders import shared_encoder

        todo = sorted({t for t in texts if t not in self.vectors})
        if todo:
            for text, vec in zip(todo, shared_encoder(MODEL[0]).encode(todo).dense):
                self.vectors[text] = vec
        return np.array([self.vectors[t] for t in texts], dtype=np.float32).reshape(len(texts), -1)


def check_representations(path: Path, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]],
                          encoding: str | None, reference: Reference) -> dict[str, int]:
    """Every representation any segment lists holds its documents' vectors; each one is in every
    segment unless an encoding of it was in flight (``encoding``). Returns counts (segments
    checked, representations found partial)."""
    import numpy as np

    from cascade.index import representations as reps
    from cascade.index.index import Index

    idx = Index.open(path, verify=False)
    counts = {"segments": 0, "partial": 0}
    try:
        specs = idx.manifest.representations
        assert set(specs) in (set(before), set(after)), (specs, before, after)
        for name, spec in specs.items():
            assert spec in (before.get(name), after.get(name)), (name, spec)
            present = [reps.has_rep(seg, name) for seg in idx.segments]
            if not all(present):
                assert name == encoding and spec == after[name], f"{name} missing from a segment outside its encoding"
                counts["partial"] += 1
            for seg, has in zip(idx.segments, present):
                if not has:
                    continue
                texts = [d.text for d in seg.docstore.get(range(seg.n_docs))]
                dense = np.asarray(reps.load(seg, name, "dense"), dtype=np.float32)
                assert dense.shape[0] == seg.n_docs
                assert np.abs(dense - reference(texts)).max() < 1e-3, f"{name} in {seg.entry.name}: wrong vectors"
                if spec.get("tokens"):
                    offsets = reps.load(seg, name, "tok_offsets")
                    assert len(offsets) == seg.n_docs + 1 and offsets[-1] == len(reps.load(seg, name, "tok_vectors"))
                counts["segments"] += 1
    finally:
        idx.close()
    return counts


def committed_generation(path: Path) -> int:
    """The generation of the index's current commit (-1 before the first)."""
    from cascade.index.manifest import Manifest

    try:
        return Manifest.read(path).generation
    except Exception:  # noqa: BLE001  (no manifest yet)
        return -1


def orphans(path: Path) -> list[Path]:
    """Files and directories in the index that no commit lists (what a killed writer left)."""
    from cascade.index.debris import find_debris

    return find_debris(path)


def identities(paths: list[Path]) -> set[tuple[str, int, int]]:
    """(path, inode, mtime) of each path still there: a later writer may write a file of the same
    name again (a tombstone ``del-<generation>.npy`` of a generation whose first try was killed,
    superseded and left unlisted by the next kill), which is a new orphan, not a survivor."""
    found = set()
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        found.add((str(p), st.st_ino, st.st_mtime_ns))
    return found


def cli_check(path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output


def scores_match_fresh(path: Path, tmp: Path) -> None:
    from cascade.core.types import Doc
    from cascade.index.index import Index
    from cascade.retrieve.bm25 import BM25

    idx = Index.open(path)
    fresh = Index.build([Doc(d.id, d.text, meta=d.meta) for d in idx], tmp / "fresh", filter_fields=FIELDS,
                        overwrite=True)
    for q in ("w1 w2 w3", "w10 w200", "w7"):
        a = {h.id: h.score for h in BM25(idx).search(q, k=1000)}
        b = {h.id: h.score for h in BM25(fresh).search(q, k=1000)}
        assert a == b, q
    idx.close()
    fresh.close()


def kill_loop(workdir: Path, kills: int, seed: int = 0, max_delay: float = 0.4,
              score_check_every: int = 25, model: str | None = None) -> dict[str, Any]:
    """Kill a writer ``kills`` times; raises AssertionError on any lost or corrupted commit.
    With ``model`` (a sentence-transformers directory) the index is encoded (see the module
    docstring)."""
    rng = random.Random(seed)
    neural = model is not None
    MODEL[:] = [model] if model else []
    path = workdir / "live.idx"
    warm = workdir / "warm.idx"  # load every module and compiled kernel once, so children fork warm
    run_op(warm, ("build", plan(0, seed)[0][0][1]))
    if neural:
        run_op(warm, ("encode", ("tiny", 0)))
    run_op(warm, ("add", [make_doc(rng, "warm")]))
    run_op(warm, ("merge", True))
    ops, states = plan(40 * kills + 100, seed, neural)
    specs = rep_states(ops) if neural else []
    reference = Reference() if neural else None
    pos = 0  # ops[:pos] are committed (the index holds states[pos - 1])
    in_flight: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    debris = {"after a kill": 0, "kills leaving some": 0, "left after the next commit": 0,
              "left after check --repair": 0, "repairs": 0}
    reps_seen: Counter[str] = Counter()
    previous: set[tuple[str, int, int]] = set()
    last_generation = -1
    done = 0
    start = time.perf_counter()
    while done < kills:
        if pos >= len(ops):
            raise RuntimeError("plan exhausted; raise the plan length")
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            child(path, ops, pos, wfd)
        os.close(wfd)
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(rfd) as report:
            lines = report.read().split()
        if any(line.startswith("error") for line in lines):
            raise AssertionError(f"writer failed: {lines}")
        finished = [int(x) for x in lines if x.isdigit()]
        acked = finished[-1] + 1 if finished else pos
        kind = ops[acked][0] if acked < len(ops) else "none"
        in_flight[kind] += 1
        if pos == 0 and acked == 0 and not path.exists():
            outcomes["nothing built yet"] += 1
            done += 1
            continue
        left = orphans(path)
        generation = committed_generation(path)
        # a commit ran since the last kill (an operation reported done may commit nothing, e.g. a
        # merge with nothing to merge): it removed what that kill left
        if generation > last_generation and previous:
            still = identities(left) & previous
            debris["left after the next commit"] += len(still)
            assert not still, f"kill {done}: orphans survived a commit: {sorted(still)}"
        debris["after a kill"] += len(left)
        debris["kills leaving some"] += bool(left)
        actual = observed(path)
        cli_check(path)
        if acked > 0 and actual == states[acked - 1]:
            pos = acked
            outcomes["last reported commit"] += 1
        elif acked < len(ops) and actual == states[acked]:
            pos = acked + 1
            outcomes["commit made, not yet reported"] += 1
        else:
            raise AssertionError(f"kill {done}: index matches neither the state after op {acked - 1} "
                                 f"nor after op {acked} ({kind})")
        if neural:
            encoding = ops[acked][1][0] if kind == "encode" else None
            found = check_representations(path, specs[acked - 1] if acked else {}, specs[min(acked, len(ops) - 1)],
                                          encoding, reference)
            reps_seen["segments checked"] += found["segments"]
            reps_seen["kills leaving an encoding partial"] += found["partial"]
        done += 1
        previous, last_generation = identities(left), generation
        if left and done % 10 == 0:
            from cascade.index.index import repair_index

            repair_index(path)
            debris["repairs"] += 1
            debris["left after check --repair"] += len(orphans(path))
            assert orphans(path) == []
            previous = set()
        if score_check_every and done % score_check_every == 0:
            scores_match_fresh(path, workdir)
    return {"kills": done, "ops_committed": pos, "seconds": time.perf_counter() - start,
            "in_flight": dict(in_flight), "outcomes": dict(outcomes), "orphans": debris,
            "representations": dict(reps_seen)}


def tiny_model(root: Path) -> str:
    """A one-layer sentence-transformers BERT with random weights, saved under ``root`` (as the
    tests' ``tiny_bi_encoder`` fixture makes it): encodes fast, no network."""
    import transformers
    from sentence_transformers import SentenceTransformer, models

    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (raw / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = transformers.BertTokenizerFast(str(raw / "vocab.txt"))
    transformers.set_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    model = SentenceTransformer(modules=[models.Transformer(str(raw), max_seq_length=48),
                                         models.Pooling(32, "mean"), models.Normalize()])
    model.save(str(root / "model"))
    return str(root / "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=0.4)
    parser.add_argument("--model", help="sentence-transformers directory: encode the index (see above)")
    parser.add_argument("--tiny", action="store_true", help="encode with a random one-layer model made now")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default=None, help="results file name (default kill-loop-<date>[-neural].md)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny") if args.tiny else args.model
        work = Path(tmp) / "work"
        work.mkdir()
        result = kill_loop(work, args.kills, args.seed, args.max_delay, model=model)
    command = "python " + " ".join(sys.argv)
    what = "encoded index (add, update, delete, merge, encode)" if model else "add, update, delete, merge"
    text = (f"# Kill loop, {dt.date.today()}: {what}\n\n`{command}`\n\n"
            f"- kills: {result['kills']} in {result['seconds']:.1f} s; operations committed: "
            f"{result['ops_committed']}\n- operation in flight at each kill: {result['in_flight']}\n"
            f"- state found after each kill: {result['outcomes']}\n- corrupted or lost commits: 0 "
            "(any would have stopped the run)\n"
            f"- orphan files (no commit lists them) found after the kills: {result['orphans']['after a kill']} "
            f"(after {result['orphans']['kills leaving some']} kills); left after the next commit: "
            f"{result['orphans']['left after the next commit']}; left after `cascade check --repair` "
            f"({result['orphans']['repairs']} runs): {result['orphans']['left after check --repair']}\n")
    if model:
        text += (f"- representations: {result['representations'].get('segments checked', 0)} segment "
                 "representations checked against their documents' vectors (0 wrong: any would have stopped the "
                 f"run); kills leaving an encoding part-done (continued by the next run): "
                 f"{result['representations'].get('kills leaving an encoding partial', 0)}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / (args.name or f"kill-loop-{dt.date.today()}{'-neural' if model else ''}.md")
    target.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
