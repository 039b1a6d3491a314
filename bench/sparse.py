"""Sparse (BM25) retrieval speed, Cascade vs its peers, side by side in one run.

    python bench/sparse.py ../shared/datasets/{scifact,nfcorpus-preprocessed,vaswani} --synthetic 1000000
    python bench/sparse.py DATASET_DIR... [--synthetic N] [--systems cascade,bm25s,pisa,tantivy,rank-bm25]
                           [--json] [--queries N] [--threads T]

Peers: bm25s (numba backend), PISA (pyterrier-pisa), tantivy (tantivy-py) and rank-bm25; install
them with `pip install -e '.[bench]'`. A system that is not installed gets a row saying so.

Each (system, dataset) pair runs in a fresh child process (this script with --worker), so peak
RSS is per system. In the child: read the corpus (not timed); build the index (timed, one
indexing thread unless --index-threads); warm up on the first few queries (not timed); then
answer every query one at a time from its raw text, the system's own query analysis included,
single-threaded at k=10 and at k=1000, and at k=10 with T threads (the system's own batch
threading where it has one, else a thread pool). QPS = queries / seconds, from the median of
--repeat timed passes. nDCG@10 comes from the k=1000 results and the test qrels (real datasets
only; the judged queries are the ones timed).

Text analysis is the same wherever the system allows it: for real datasets, lowercase words of two
or more word characters, Lucene's English stop set and the Snowball English stemmer, BM25 with
k1=0.9, b=0.4 (Lucene's variant); for the synthetic corpus (bench/synthetic.py) no stop words and
no stemming. Differences that remain are listed per system in the output (see NOTES).

``--rounds R`` runs the whole sweep R times (system order reversed every other round) and reports
each figure's median over the rounds: peers' speeds drift by up to a third between runs on a busy
machine, and the median of interleaved rounds keeps that drift out of the ratios.

Without --json: prints a Markdown table and writes bench/results/sparse-<date>.md with the command
line, the machine and the package versions. With --json: one JSON object per line per (system,
dataset), nothing written.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from cascade.index import bm25_formula

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SYSTEMS = ("cascade", "bm25s", "pisa", "tantivy", "rank-bm25")
PACKAGES = {"cascade": "cascade-ir", "bm25s": "bm25s", "pisa": "pyterrier-pisa", "tantivy": "tantivy",
            "rank-bm25": "rank-bm25"}
OTHER_PACKAGES = ("numpy", "numba", "PyStemmer", "python-terrier", "ir_measures")
K1, B = bm25_formula.K1, bm25_formula.B
WARMUP_QUERIES = 10
RANK_BM25_MAX_DOCS = 100_000
RANK_BM25_MAX_QUERIES = 100
RESULT_MARKER = "@@sparse-bench-result "
# Lucene's English stop set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET); the same 33 words as
# Cascade's "english" list, bm25s's "en" list and PISA's "lucene" list.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split())
TOKEN_PATTERN = r"(?u)\b\w\w+\b"

NOTES = {
    "cascade": "Lucene BM25 k1=0.9 b=0.4; cascade.Analyzer() (Lucene stop set, Snowball English); "
               "index_mb includes the document store (titles and texts); "
               "JIT compilation (if any) warmed on a 3-document index before the timers.",
    "bm25s": "bm25s.BM25(method='lucene', backend='numba'); bm25s.tokenize (stopwords 'en' = Lucene set, "
             "PyStemmer English); numba compilation before the timers; index_mb is retriever.save() "
             "(not timed; bm25s indexes in memory).",
    "pisa": "PISA BM25 k1=0.9 b=0.4, block-max WAND (exact top-k), porter2 (= Snowball English) stemmer, "
            "Lucene stop set at query time (PISA indexes stop words, so document lengths count them); "
            "index time includes building the BM25 score bounds (done when the first retriever opens).",
    "tantivy": "BM25 k1=1.2 b=0.75 (fixed in tantivy); analyzer: simple tokenizer, remove_long(40), "
               "lowercase, Lucene stop set, Snowball English stemmer (en_stem plus stop words); "
               "frequencies only (no positions); query = OR of term queries of the analysed words; "
               "multi-thread QPS via a Python thread pool.",
    "rank-bm25": "BM25Okapi k1=0.9 b=0.4: Robertson idf log((N-df+0.5)/(df+0.5)), negative "
                 "values replaced by 0.25 x mean idf: a different BM25 variant; tokens as bm25s makes them (regex, Lucene "
                 f"stop set, PyStemmer English); scores every document in Python: at most "
                 f"{RANK_BM25_MAX_QUERIES} queries, skipped above {RANK_BM25_MAX_DOCS:,} documents; "
                 "multi-thread QPS via a Python thread pool.",
}
SYNTHETIC_NOTE = "synthetic corpus: no stop words, no stemming for every system"

# -- datasets (read in the child, not timed) ------------------------------------------------


@dataclass
class Dataset:
    name: str
    docs: list[tuple[str, str, str]]  # (id, title, text)
    queries: list[tuple[str, str]]  # (id, text)
    qrels: dict[str, dict[str, int]] | None
    english: bool  # English analysis (real text) or none (synthetic tokens)


def load_dataset(spec: dict[str, Any]) -> Dataset:
    if spec["kind"] == "synthetic":
        sys.path.insert(0, str(HERE))
        from synthetic import generate

        docs, queries = generate(spec["n_docs"], spec["n_queries"], seed=spec["seed"])
        return Dataset(spec["name"], [(i, "", text) for i, text in docs], queries, None, english=False)
    import cascade
    from cascade.core.types import ReadReport

    ds = cascade.BeirDataset(spec["path"])
    docs = [(d.id, d.title, d.text) for d in ds.corpus(skip_bad=True, report=ReadReport())]
    queries = [(q.id, q.text) for q in ds.queries(skip_bad=True, report=ReadReport())]
    qrels = ds.qrels(skip_bad=True, report=ReadReport()) if "test" in ds.splits() else None
    if qrels is not None:
        queries = [q for q in queries if q[0] in qrels]  # the judged queries, as in an evaluation
    return Dataset(spec["name"], docs, queries, qrels, english=True)


def joined(title: str, text: str) -> str:
    return f"{title} {text}" if title else text


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- systems --------------------------------------------------------------------------------
# Each adapter: setup() (imports, JIT; not timed), index(docs) (timed), index_bytes(),
# ready(threads) (not timed), search(queries, k, threads) -> raw results (timed),
# run(raw, queries) -> {qid: {docid: score}} (not timed).


class System:
    name = ""

    def __init__(self, english: bool, workdir: Path, index_threads: int) -> None:
        self.english, self.workdir, self.index_threads = english, workdir, index_threads
        self.extra: dict[str, Any] = {}
        self.pool: ThreadPoolExecutor | None = None

    def setup(self) -> None: ...

    def index(self, docs: list[tuple[str, str, str]]) -> None:
        raise NotImplementedError

    def index_bytes(self) -> int | None:
        return None

    def ready(self, threads: int) -> None:
        if threads > 1:
            self.pool = ThreadPoolExecutor(threads)

    def search(self, queries: list[tuple[str, str]], k: int, threads: int) -> Any:
        raise NotImplementedError

    def run(self, raw: Any, queries: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
        raise NotImplementedError

    def each(self, fn: Callable[[str], Any], queries: list[tuple[str, str]], threads: int) -> list[Any]:
        """fn over the query texts: a plain loop, or the thread pool when threads > 1."""
        texts = [text for _, text in queries]
        if threads <= 1:
            return [fn(text) for text in texts]
        assert self.pool is not None
        return list(self.pool.map(fn, texts))


class CascadeSystem(System):
    name = "cascade"

    def setup(self) -> None:
        import cascade
        import cascade.retrieve.bm25  # noqa: F401  (load the modules before the timers)

        self.cascade = cascade
        self.path = self.workdir / "cascade"
        # A throwaway 3-document index, built and searched: any JIT compilation happens here, not
        # under the timers (as bm25s's numba compilation is done before them).
        toy = [cascade.Doc(str(i), text) for i, text in enumerate(["w1 w2 alpha", "w2 beta", "w3 alpha w1"])]
        warm = cascade.BM25(cascade.Index.build(toy, self.workdir / "warmup", analyzer=self.analyzer()), k1=K1, b=B)
        for threads in (1, 2):
            warm.search_batch([cascade.Query("q", "w1 alpha")], k=2, threads=threads).to_run()
        shutil.rmtree(self.workdir / "warmup", ignore_errors=True)

    def analyzer(self) -> Any:
        c = self.cascade
        return c.Analyzer() if self.english else c.Analyzer(stopwords=None, stemmer=None)

    def index(self, docs: list[tuple[str, str, str]]) -> None:
        c = self.cascade
        self.idx = c.Index.build((c.Doc(i, text, title) for i, title, text in docs), self.path,
                                 analyzer=self.analyzer())
        self.bm25 = c.BM25(self.idx, k1=K1, b=B)

    def index_bytes(self) -> int:
        self.extra["docstore_mb"] = round(
            sum(p.stat().st_size for p in self.path.rglob("docs*") if p.is_file()) / 2**20, 2)
        return dir_bytes(self.path)

    def search(self, queries: list[tuple[str, str]], k: int, threads: int) -> Any:
        Query = self.cascade.Query
        return self.bm25.search_batch([Query(qid, text) for qid, text in queries], k=k, threads=threads)

    def run(self, raw: Any, queries: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
        return raw.to_run()


class Bm25sSystem(System):
    name = "bm25s"

    def setup(self) -> None:
        import bm25s
        import Stemmer

        self.bm25s = bm25s
        self.stemmer = Stemmer.Stemmer("english") if self.english else None
        self.stopwords = "en" if self.english else None
        self.retriever = bm25s.BM25(method="lucene", k1=K1, b=B, backend="numba")
        self.retriever.compile(activate_numba=True, warmup=True)

    def tokenize(self, texts: list[str], return_ids: bool) -> Any:
        return self.bm25s.tokenize(texts, stopwords=self.stopwords, stemmer=self.stemmer, return_ids=return_ids,
                                   show_progress=False)

    def index(self, docs: list[tuple[str, str, str]]) -> None:
        self.ids = [i for i, _, _ in docs]
        tokens = self.tokenize([joined(title, text) for _, title, text in docs], return_ids=True)
        self.retriever.index(tokens, show_progress=False)

    def index_bytes(self) -> int:
        path = self.workdir / "bm25s"
        start = time.perf_counter()
        self.retriever.save(str(path))
        self.extra["save_seconds"] = round(time.perf_counter() - start, 3)
        return dir_bytes(path)

    def search(self, queries: list[tuple[str, str]], k: int, threads: int) -> Any:
        tokens = self.tokenize([text for _, text in queries], return_ids=False)
        return self.retriever.retrieve(tokens, k=k, n_threads=threads, show_progress=False)

    def run(self, raw: Any, queries: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
        docs, scores = raw
        return {qid: {self.ids[d]: float(s) for d, s in zip(ds.tolist(), ss.tolist()) if s > 0}
                for (qid, _), ds, ss in zip(queries, docs, scores)}


class PisaSystem(System):
    name = "pisa"

    def setup(self) -> None:
        import pandas
        import pyterrier_pisa

        try:
            pyterrier_pisa.log_level(False)
        except AttributeError:  # not in every build; the log goes to the child's stderr anyway
            pass
        self.pandas, self.pisa = pandas, pyterrier_pisa
        self.path = self.workdir / "pisa"
        self.retrievers: dict[tuple[int, int], Any] = {}

    def retriever(self, k: int, threads: int) -> Any:
        if (k, threads) not in self.retrievers:  # opening one loads the index (and builds bounds once)
            self.retrievers[k, threads] = self.pisa_index.bm25(k1=K1, b=B, num_results=k, threads=threads)
        return self.retrievers[k, threads]

    def index(self, docs: list[tuple[str, str, str]]) -> None:
        self.pisa_index = self.pisa.PisaIndex(
            str(self.path), stemmer="porter2" if self.english else "none",
            stops="lucene" if self.english else "none", threads=self.index_threads)
        self.pisa_index.index({"docno": i, "text": joined(title, text)} for i, title, text in docs)
        self.retriever(1000, 1)  # builds the BM25 block-max score data: part of a usable index

    def index_bytes(self) -> int:
        return dir_bytes(self.path)

    def ready(self, threads: int) -> None:
        pass

    def search(self, queries: list[tuple[str, str]], k: int, threads: int) -> Any:
        frame = self.pandas.DataFrame({"qid": [q for q, _ in queries], "query": [t for _, t in queries]})
        return self.retriever(k, threads).transform(frame)

    def run(self, raw: Any, queries: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
        run: dict[str, dict[str, float]] = {qid: {} for qid, _ in queries}
        for qid, docno, score in zip(raw["qid"].tolist(), raw["docno"].tolist(), raw["score"].tolist()):
            run[qid][docno] = float(score)
        return run


class TantivySystem(System):
    name = "tantivy"

    def setup(self) -> None:
        import tantivy

        self.tantivy = tantivy
        self.path = self.workdir / "tantivy"
        builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        builder = builder.filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase())
        if self.english:
            builder = builder.filter(tantivy.Filter.custom_stopword(sorted(LUCENE_STOPWORDS)))
            builder = builder.filter(tantivy.Filter.stemmer("english"))
        self.analyzer = builder.build()

    def index(self, docs: list[tuple[str, str, str]]) -> None:
        tv = self.tantivy
        schema_builder = tv.SchemaBuilder()
        schema_builder.add_text_field("body", stored=False, tokenizer_name="bench", index_option="freq")
        schema_builder.add_integer_field("num", stored=False, indexed=False, fast=True)
        self.schema = schema_builder.build()
        self.path.mkdir()
        self.tv_index = tv.Index(self.schema, path=str(self.path))
        self.tv_index.register_tokenizer("bench", self.analyzer)
        writer = self.tv_index.writer(heap_size=256_000_000, num_threads=self.index_threads)
        for num, (_, title, text) in enumerate(docs):
            writer.add_document(tv.Document(body=joined(title, text), num=num))
        writer.commit()
        writer.wait_merging_threads()
        self.tv_index.reload()
        self.searcher = self.tv_index.searcher()
        self.ids = [i for i, _, _ in docs]

    def index_bytes(self) -> int:
        return dir_bytes(self.path)

    def search(self, queries: list[tuple[str, str]], k: int, threads: int) -> Any:
        tv, schema, searcher, analyze = self.tantivy, self.schema, self.searcher, self.analyzer.analyze
        should, term_query, boolean_query = tv.Occur.Should, tv.Query.term_query, tv.Query.boolean_query

        def one(text: str) -> list:
            query = boolean_query([(should, term_query(schema, "body", term)) for term in analyze(text)])
            return searcher.search(query, k, count=False).hits

        return self.each(one, queries, threads)

    def run(self, raw: Any, queries: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
        run = {}
        for (qid, _), hits in zip(queries, raw):
            nums = self.searcher.fast_field_values("num", [address for _, address in hits]) if hits else []
            run[qid] = {self.ids[n]: float(score) for (score, _), n in zip(hits, nums)}
        return run


class RankBm25System(System):
    name = "rank-bm25"

    def setup(self) -> None:
        import numpy
        import rank_bm25
        import Stemmer

        self.np, self.rank_bm25 = numpy, rank_bm25
        self.split = re.compile(TOKEN_PATTERN).findall
        self.stem = Stemmer.Stemmer("english").stemWords if self.english else None
        self.stop = LUCENE_STOPWORDS if self.english else frozenset()

    def tokens(self, text: str) -> list[str]:
        stop = self.stop
        words = [w for w in self.split(text.lower()) if w not in stop]
        return self.stem(words) if self.stem else words

    def index(self, docs: list[tuple[str, str, str]]) -> None:
        self.ids = [i for i, _, _ in docs]
        self.bm25 = self.rank_bm25.BM25Okapi([self.tokens(joined(title, text)) for _, title, text in docs],
                                             k1=K1, b=B)

    def search(self, queries: list[tuple[str, str]], k: int, threads: int) -> Any:
        np, bm25, tokens = self.np, self.bm25, self.tokens

        def one(text: str) -> tuple[Any, Any]:
            scores = bm25.get_scores(tokens(text))
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            return top, scores[top]

        return self.each(one, queries, threads)

    def run(self, raw: Any, queries: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
        # rank-bm25's idf can be negative or floored, so every returned document is kept
        return {qid: {self.ids[d]: float(s) for d, s in zip(ds.tolist(), ss.tolist())}
                for (qid, _), (ds, ss) in zip(queries, raw)}


ADAPTERS: dict[str, type[System]] = {cls.name: cls for cls in
                                     (CascadeSystem, Bm25sSystem, PisaSystem, TantivySystem, RankBm25System)}

# -- the child ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KB on Linux


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


MIN_PASS_SECONDS = 0.25  # a timed pass repeats the query set until it lasts this long


def median_timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds per call over ``repeat`` timed passes, and the last call's result.

    On small collections one call over all queries lasts a few milliseconds, where timer
    and scheduler noise swamp the differences being measured; each pass therefore repeats
    the call until it has run for MIN_PASS_SECONDS, the same rule for every system."""
    times = []
    for _ in range(repeat):
        calls, spent = 0, 0.0
        while calls == 0 or spent < MIN_PASS_SECONDS:
            seconds, result = timed(fn)
            spent += seconds
            calls += 1
        times.append(spent / calls)
    return statistics.median(times), result


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Index and search one dataset with one system; the JSON row."""
    spec, name, threads = job["dataset"], job["system"], job["threads"]
    row = empty_row(name, spec, threads, job["repeat"])
    data = load_dataset(spec)
    queries = data.queries
    if job.get("max_queries"):
        queries = queries[: job["max_queries"]]
    if name == "rank-bm25":
        queries = queries[:RANK_BM25_MAX_QUERIES]
    row.update(n_docs=len(data.docs), n_queries=len(queries), baseline_rss_mb=peak_rss_mb())
    workdir = Path(tempfile.mkdtemp(prefix=f"sparse-bench-{name}-", dir=job.get("workdir")))
    try:
        system = ADAPTERS[name](data.english, workdir, job["index_threads"])
        system.setup()
        index_seconds, _ = timed(lambda: system.index(data.docs))
        index_bytes = system.index_bytes()
        system.ready(threads)
        k10, k1000 = min(10, len(data.docs)), min(1000, len(data.docs))
        warm = queries[:WARMUP_QUERIES]
        for k, t in ((k10, 1), (k1000, 1), (k10, threads)):
            system.search(warm, k, t)
        repeat = job.get("repeat", 1)
        s10, _ = median_timed(lambda: system.search(queries, k10, 1), repeat)
        s1000, raw = median_timed(lambda: system.search(queries, k1000, 1), repeat)
        s_mt, _ = median_timed(lambda: system.search(queries, k10, threads), repeat)
        ndcg = None
        if data.qrels is not None:
            import cascade

            run = system.run(raw, queries)
            ndcg = round(cascade.evaluate(run, data.qrels, ["nDCG@10"], queries=[q for q, _ in queries]).mean["nDCG@10"], 4)
        row.update(
            qps_top10=round(len(queries) / s10, 1), qps_top1000=round(len(queries) / s1000, 1),
            qps_top10_mt=round(len(queries) / s_mt, 1),
            index_docs_per_s=round(len(data.docs) / index_seconds, 1), index_seconds=round(index_seconds, 3),
            index_mb=None if index_bytes is None else round(index_bytes / 2**20, 2), **{"ndcg@10": ndcg},
            **system.extra)
        if system.pool is not None:
            system.pool.shutdown()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def worker(job_json: str) -> int:
    row = measure(json.loads(job_json))
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(row), flush=True)
    return 0


# -- the parent -----------------------------------------------------------------------------


def empty_row(system: str, spec: dict[str, Any], threads: int, repeat: int) -> dict[str, Any]:
    notes = NOTES[system] if spec["kind"] != "synthetic" else f"{NOTES[system].rstrip('.')}; {SYNTHETIC_NOTE}."
    return {"system": system, "dataset": spec["name"], "n_docs": spec.get("n_docs"), "n_queries": None,
            "threads": threads, "repeat": repeat, "qps_top10": None, "qps_top1000": None, "qps_top10_mt": None,
            "index_docs_per_s": None, "index_seconds": None, "peak_rss_mb": None, "baseline_rss_mb": None,
            "index_mb": None, "ndcg@10": None, "notes": notes}


def installed(system: str) -> str | None:
    try:
        return metadata.version(PACKAGES[system])
    except metadata.PackageNotFoundError:
        return None


def run_child(job: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    row = empty_row(job["system"], job["dataset"], job["threads"], job["repeat"])
    if installed(job["system"]) is None:
        return {**row, "skipped": f"{PACKAGES[job['system']]} is not installed (pip install -e '.[bench]')"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**row, "error": f"timed out after {timeout} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
    print(f"[{job['system']} on {job['dataset']['name']}] failed (exit {done.returncode}):\n  "
          + "\n  ".join(tail), file=sys.stderr)
    return {**row, "error": tail[-1] if tail else f"exit status {done.returncode}"}


def sweep_one(system: str, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One (system, dataset) measurement in its own child process, or the row saying why not."""
    job = {"system": system, "dataset": spec, "threads": args.threads, "index_threads": args.index_threads,
           "repeat": args.repeat, "max_queries": args.queries,
           "workdir": str(args.workdir) if args.workdir else None}
    if system == "rank-bm25" and spec["kind"] == "synthetic" and spec["n_docs"] > RANK_BM25_MAX_DOCS:
        return {**empty_row(system, spec, args.threads, args.repeat),
                "skipped": f"over {RANK_BM25_MAX_DOCS:,} documents (scores every document in Python)"}
    if not args.json:
        print(f"running {system} on {spec['name']} ...", file=sys.stderr, flush=True)
    return run_child(job, args.timeout)


MEDIAN_FIELDS = ("qps_top10", "qps_top1000", "qps_top10_mt", "index_docs_per_s", "index_seconds", "peak_rss_mb",
                 "baseline_rss_mb")


def median_rows(rows: list[dict[str, Any]], systems: list[str]) -> list[dict[str, Any]]:
    """One row per (dataset, system): each measured figure's median over the rounds that gave one."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for system in systems:
            group = [r for r in rows if r["dataset"] == dataset and r["system"] == system]
            measured = [r for r in group if r.get("qps_top10") is not None]
            if not measured:
                out.append(group[0])
                continue
            merged = {**measured[0], "rounds": len(measured)}
            for field in MEDIAN_FIELDS:
                values = [r[field] for r in measured if r.get(field) is not None]
                merged[field] = round(statistics.median(values), 3) if values else None
            out.append(merged)
    return out


def dataset_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    specs = []
    for path in args.datasets:
        if not (path / "corpus.jsonl").is_file():
            raise SystemExit(f"{path}: not a BEIR dataset directory (no corpus.jsonl)")
        specs.append({"kind": "beir", "path": str(path.resolve()), "name": path.resolve().name})
    if args.synthetic:
        specs.append({"kind": "synthetic", "n_docs": args.synthetic, "n_queries": args.queries or 1000,
                      "seed": args.seed, "name": f"synthetic-{args.synthetic}"})
    if not specs:
        raise SystemExit("give at least one dataset directory or --synthetic N")
    return specs


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "nproc": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1).strip()  # type: ignore[union-attr]
        meminfo = Path("/proc/meminfo").read_text()
        info["memory_gb"] = round(int(re.search(r"MemTotal:\s*(\d+)", meminfo).group(1)) / 2**20, 1)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        repo = HERE.parent
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True)
        if commit.returncode == 0:
            info["cascade_commit"] = commit.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        pass
    versions = {}
    for package in [*PACKAGES.values(), *OTHER_PACKAGES]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    info["packages"] = versions
    return info


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown_table(rows: list[dict[str, Any]], threads: int) -> str:
    lines = [f"| dataset | system | docs | queries | QPS k=10 | QPS k=1000 | QPS k=10, {threads} threads "
             "| index docs/s | index s | peak RSS MB | index MB | nDCG@10 |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        if r.get("skipped") or r.get("error"):
            lines.append(f"| {r['dataset']} | {r['system']} | {fmt(r['n_docs'])} | | "
                         f"{'skipped' if r.get('skipped') else 'error'}: {r.get('skipped') or r.get('error')} "
                         "| | | | | | | |")
            continue
        lines.append(
            f"| {r['dataset']} | {r['system']} | {fmt(r['n_docs'])} | {fmt(r['n_queries'])} "
            f"| {fmt(r['qps_top10'])} | {fmt(r['qps_top1000'])} | {fmt(r['qps_top10_mt'])} "
            f"| {fmt(r['index_docs_per_s'])} | {fmt(r['index_seconds'], 2)} | {fmt(r['peak_rss_mb'])} "
            f"| {fmt(r['index_mb'], 1)} | {fmt(r['ndcg@10'], 4)} |")
    return "\n".join(lines)


def ratio_table(rows: list[dict[str, Any]], threads: int) -> str:
    """Cascade's speed divided by each peer's, from the same run: > 1 means Cascade is faster."""
    fields = ("qps_top10", "qps_top1000", "qps_top10_mt", "index_docs_per_s")
    ok = [r for r in rows if not r.get("skipped") and not r.get("error")]
    ours = {r["dataset"]: r for r in ok if r["system"] == "cascade"}
    lines = [f"| dataset | peer | QPS k=10 | QPS k=1000 | QPS k=10, {threads} threads | index docs/s |",
             "|---|---|--:|--:|--:|--:|"]
    for r in ok:
        mine = ours.get(r["dataset"])
        if r["system"] == "cascade" or mine is None:
            continue
        cells = [f"{mine[f] / r[f]:.2f}x" if mine.get(f) and r.get(f) else "–" for f in fields]
        lines.append(f"| {r['dataset']} | {r['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def write_results(path: Path, command: str, info: dict[str, Any], rows: list[dict[str, Any]], threads: int) -> None:
    packages = ", ".join(f"{k} {v}" for k, v in info.pop("packages").items())
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    systems = sorted({r["system"] for r in rows}, key=SYSTEMS.index)
    notes = "\n".join(f"- **{s}**: {NOTES[s]}" for s in systems)
    ratios = ratio_table(rows, threads)
    text = (f"# Sparse retrieval speed: Cascade vs peers\n\nCommand: `{command}`\n\n"
            f"## Machine\n\n{machine}\n- packages: {packages}\n\n## Results\n\n{markdown_table(rows, threads)}\n\n"
            + (f"Cascade ÷ peer, same run (above 1: Cascade faster):\n\n{ratios}\n\n" if ratios else "")
            + "QPS: queries answered one at a time from raw text (query analysis included), all queries "
              "timed after a warm-up, median of the timed passes (`repeat` in --json; each pass repeats the "
              "query set until it has run 0.25 s, for every system); multi-thread QPS "
              "uses the system's batch threading where it has one. Each (system, dataset) runs in its "
              "own process, one after another. Peak RSS is that process's maximum resident set "
              "(ru_maxrss): the corpus as read, and for numba users (bm25s; Cascade if it uses numba) "
              "the JIT compiler, are included (baseline_rss_mb in --json is the RSS after reading the "
              "corpus). Index time is one indexing thread unless --index-threads. rank-bm25 answers at "
              f"most its first {RANK_BM25_MAX_QUERIES} queries, so its nDCG@10 is over those only."
            + (f" Every figure is the median over {max(r.get('rounds', 1) for r in rows)} rounds of the whole "
               "sweep, system order reversed every other round." if any(r.get("rounds", 1) > 1 for r in rows) else "")
            + f"\n\n## Systems\n\n{notes}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", type=Path, help="BEIR dataset directories")
    parser.add_argument("--synthetic", type=int, metavar="N", help="also run on a synthetic corpus of N documents")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {','.join(SYSTEMS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object per (system, dataset) line")
    parser.add_argument("--queries", type=int, metavar="N",
                        help="use the first N queries (synthetic: generate N; default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="threads for the multi-thread QPS (default 2)")
    parser.add_argument("--index-threads", type=int, default=1, help="indexing threads where a system has them")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed passes over the queries per setting; QPS is from the median (default 3)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole sweep this many times, system order reversed every other round, and "
                             "report each figure's median over the rounds (steadier ratios on a busy machine)")
    parser.add_argument("--seed", type=int, default=42, help="synthetic corpus seed")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per (system, dataset) child")
    parser.add_argument("--workdir", type=Path, help="where the children build their indexes (default: temp dir)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/sparse-<date>.md)")
    parser.add_argument("--no-write", action="store_true", help="print the table only; write no results file")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if min(args.threads, args.index_threads, args.repeat, args.rounds) < 1:
        parser.error("--threads, --index-threads, --repeat and --rounds must be at least 1")
    command = "python " + shlex.join([sys.argv[0], *argv])
    info = machine_info()
    rows = []
    for spec in dataset_specs(args):
        for round_ in range(args.rounds):
            for system in (systems if round_ % 2 == 0 else systems[::-1]):
                row = sweep_one(system, spec, args)
                rows.append({**row, "round": round_ + 1})
                if args.json:
                    print(json.dumps(rows[-1]), flush=True)
    if args.rounds > 1:
        rows = median_rows(rows, systems)
    if not args.json:
        print(markdown_table(rows, args.threads))
        ratios = ratio_table(rows, args.threads)
        if ratios:
            print("\nCascade ÷ peer (above 1: Cascade faster):\n\n" + ratios)
    if not args.no_write:
        out = args.out or RESULTS / f"sparse-{datetime.date.today()}.md"
        write_results(out, command, info, rows, args.threads)
        print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
