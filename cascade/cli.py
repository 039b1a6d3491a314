"""The `cascade` command line: thin wrappers over the library.

User mistakes (bad input, missing files, unknown names, a missing optional dependency) print
one ``error: ...`` line on stderr and exit with status 1; only a bug in Cascade shows a
traceback. Text from users and documents is printed as is: Rich markup is off everywhere (a
``[neural]`` in an install hint, or brackets in a document, stay literal).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cascade.core.errors import CascadeError, DataError
from cascade.index import bm25_formula
from cascade.index.lock import WriterBusy

app = typer.Typer(
    help="Cascade: multi-stage retrieval — index, search and evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
out = Console(markup=False, highlight=False)
TITLE_QUERY_CHARS = 80  # a longer query is shortened in a results table's title
WAIT_HINT = "wait for it to finish, or retry with --wait SECONDS"
RETRY_HINT = "wait for it to finish, then run the command again"


def say_error(message: str) -> None:
    """One ``error: ...`` line on stderr (the message printed as is, never as markup)."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


@contextmanager
def user_errors(busy_hint: str = RETRY_HINT) -> Iterator[None]:
    """Turn CascadeError, an OSError (permissions, a full disk) and Ctrl-C into one line and a
    non-zero exit. ``busy_hint`` says, in the command's own options, what to do when another
    writer holds the index."""
    try:
        yield
    except DataError as exc:
        hint = "" if exc.line is None else " (--skip-bad skips such records)"
        say_error(f"{exc}{hint}")
        raise typer.Exit(1) from None
    except WriterBusy as exc:
        say_error(str(exc.worded(busy_hint)))
        raise typer.Exit(1) from None
    except CascadeError as exc:
        say_error(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:  # the environment's doing: a read-only or full disk, a missing directory
        where = f"{exc.filename}: " if exc.filename else ""
        say_error(f"{where}{exc.strerror or exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 document``, ``2 documents`` (thousands separated)."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def version_callback(show: bool) -> None:
    if show:
        from cascade import __version__

        out.print(f"cascade {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print Cascade's version and exit."),
) -> None:
    """Cascade: multi-stage retrieval — index, search and evaluate."""


def progress(label: str, total: int | None = None, unit: str = "") -> Any:
    """Progress on stderr: a bar with time left on a terminal, else a plain line every 10 s."""
    from cascade.core.progress import Progress

    return Progress(label, total, unit=unit)


def phase_hook(bar: Any) -> Any:
    """A stage's (label, done, total) reports shown on ``bar``, a new phase for each new label."""

    def report(label: str, done: int, total: int | None) -> None:
        if label != bar.label:
            bar.relabel(label, total)
        bar.update(done)

    return report


def analyzer_from(stopwords: str, stemmer: str, lowercase: bool,  # type: ignore[no-untyped-def]
                  fold_accents: bool = True, cjk: str = "none", symbol_suffixes: bool = False):
    from cascade.text.analyzer import Analyzer

    none = ("none", "")
    return Analyzer(lowercase=lowercase, stopwords=None if stopwords in none else stopwords,
                    stemmer=None if stemmer in none else stemmer, fold_accents=fold_accents,
                    cjk=None if cjk in none else cjk, symbol_suffixes=symbol_suffixes)


def prepare_kernels() -> None:
    """Compile the search kernels now when numba's cache lacks them, saying so (first run only).
    Cached kernels load in the stage that uses them (``BM25.prepare``), where the load overlaps
    the queries' encoding a dense stage started in the background."""
    from cascade.retrieve import impact_search

    if not impact_search.kernels_cached():
        err.print("compiling Cascade's search kernels (first run only, about 20 s)", highlight=False)
        impact_search.warm_up()


def source_name(source: Path) -> str:
    """How progress lines name a corpus: its file or directory name, ``stdin`` for ``-``."""
    return "stdin" if str(source) == "-" else source.name


def skipped_note(report: Any) -> str:
    return f", {plural(report.skipped, 'bad record')} skipped" if report.skipped else ""


StopwordsOpt = typer.Option("english", help="Stopword list: english (Lucene's), snowball, none.")
StemmerOpt = typer.Option("english", help="Snowball stemmer language (PyStemmer), or none.")
LowercaseOpt = typer.Option(True, "--lowercase/--no-lowercase", help="Fold case.")
FoldAccentsOpt = typer.Option(True, "--fold-accents/--no-fold-accents",
                              help="Fold accents: Café Zürich, Straße and Øre are cafe zurich, strasse and ore.")
CjkOpt = typer.Option("none", "--cjk", help="Chinese, Japanese and Korean text: bigrams (overlapping character "
                      "pairs, for text written without spaces) or none.")
SymbolSuffixesOpt = typer.Option(False, "--symbol-suffixes/--no-symbol-suffixes",
                                 help="Keep + and # after a word of letters: C++, C#, F# are terms.")
LlmModelOpt = typer.Option("llama-cpp:qwen", "--model", help="LLM: llama-cpp:qwen, llama-cpp:/m.gguf, "
                           "openai:http://HOST/v1#MODEL, transformers:DIR.")
SkipBadOpt = typer.Option(False, "--skip-bad", help="Skip bad records (counted in the summary) instead of stopping.")
SOURCE_HELP = ("BEIR dataset dir, JSONL file (.jsonl or .jsonl.gz), TSV file (id<TAB>text or id<TAB>title<TAB>text; "
               ".tsv or .tsv.gz), folder of .txt/.md/.html/.pdf files, or - for JSONL on standard input.")
WaitOpt = typer.Option(0.0, "--wait", help="Seconds to wait for another writer to finish.")


@app.command()
def index(
    source: Path = typer.Argument(..., help=SOURCE_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="Index directory to create."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index at OUTPUT."),
    skip_bad: bool = SkipBadOpt,
    stopwords: str = StopwordsOpt,
    stemmer: str = StemmerOpt,
    lowercase: bool = LowercaseOpt,
    fold_accents: bool = FoldAccentsOpt,
    cjk: str = CjkOpt,
    symbol_suffixes: bool = SymbolSuffixesOpt,
    fields: str = typer.Option("title,text", help="Fields indexed as one: title,text | text | title."),
    filter_field: list[str] = typer.Option([], "--filter-field",
                                           help="Metadata field filters can use, NAME:TYPE with TYPE int, float, "
                                                "date or keyword (repeatable), e.g. --filter-field year:int."),
    shards: Optional[int] = typer.Option(None, "--shards", help="Split into N shard indexes by id hash (a sharded "
                                                                 "index: search it as one, locally or on Ray)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Build the shards in parallel on the Ray cluster at "
                                                          "ADDRESS ('auto': the one `ray start` runs here; 'local': "
                                                          "a private one). Needs --shards and cascade-ir[ray]."),
    passage_tokens: Optional[int] = typer.Option(None, "--passage-tokens", help="A passage index: split documents "
                                                 "into passages of at most N words (at sentence and paragraph "
                                                 "boundaries, Markdown headings kept in each title); searches "
                                                 "answer with documents scored by their best passage."),
    passage_overlap: int = typer.Option(0, "--passage-overlap", help="With --passage-tokens: repeat up to M words "
                                        "of whole sentences of a passage at the start of the next."),
) -> None:
    """Build an on-disk index from SOURCE."""
    from cascade.data import ReadReport, count_lines, open_corpus
    from cascade.index.index import Index

    with user_errors():
        from cascade.filters.columns import check_filter_fields

        analyzer = analyzer_from(stopwords, stemmer, lowercase, fold_accents, cjk, symbol_suffixes)
        filter_fields = check_filter_fields(parse_filter_fields(filter_field))
        if ray is not None and shards is None:
            raise CascadeError("--ray builds a sharded index: give --shards N too")
        if shards is not None and shards < 1:
            raise CascadeError(f"--shards must be at least 1 (got {shards})")
        passages = None
        if passage_tokens is not None:
            from cascade.index.passages import passage_settings

            if shards is not None:
                raise CascadeError("--passage-tokens builds a single passage index (with --shards: not yet)")
            passages = passage_settings({"tokens": passage_tokens, "overlap": passage_overlap})
        elif passage_overlap:
            raise CascadeError("--passage-overlap needs --passage-tokens N")
        report = ReadReport()
        docs = open_corpus(source, skip_bad=skip_bad, report=report)
        start = time.perf_counter()
        if shards is not None:
            from cascade.scale.build import build_sharded

            with progress(f"sharding {source_name(source)}", count_lines(source), "docs") as bar:
                built = build_sharded(docs, output, shards=shards, analyzer=analyzer,
                                      fields=[f.strip() for f in fields.split(",")], filter_fields=filter_fields,
                                      overwrite=overwrite, ray=(True if ray == "local" else ray),
                                      num_cpus=None, progress=bar.update)
            seconds = time.perf_counter() - start
            n_docs = sum(b["docs"] for b in built)
            err.print(f"indexed {plural(n_docs, 'document')} into {output} ({shards} shards) in {seconds:.2f} s "
                      f"({n_docs / seconds:,.0f} docs/s){skipped_note(report)}")
            return
        with progress(f"indexing {source_name(source)}", count_lines(source), "docs") as bar:
            idx = Index.build(docs, output, analyzer=analyzer, fields=[f.strip() for f in fields.split(",")],
                              filter_fields=filter_fields, overwrite=overwrite, progress=bar.update,
                              source={"path": str(source)}, passages=passages)
        seconds = time.perf_counter() - start
        what = plural(idx.n_docs, 'document') if passages is None else \
            f"{plural(report.read, 'document')} as {plural(idx.n_docs, 'passage')}"
        err.print(f"indexed {what} into {output} in {seconds:.2f} s "
                  f"({idx.n_docs / seconds:,.0f} {'docs' if passages is None else 'passages'}/s){skipped_note(report)}")
        for problem in report.problems[:5]:
            err.print(f"  skipped: {problem}")


def parse_filter_fields(specs: list[str]) -> dict[str, str]:
    """``["year:int", "lang:keyword"]`` -> ``{"year": "int", "lang": "keyword"}``."""
    out = {}
    for spec in specs:
        name, sep, kind = spec.partition(":")
        if not sep or not name.strip() or not kind.strip():
            raise CascadeError(f"--filter-field {spec!r}: expected NAME:TYPE, e.g. year:int")
        out[name.strip()] = kind.strip()
    return out


@app.command()
def add(
    index_dir: Path = typer.Argument(..., help="Index directory."),
    source: Path = typer.Argument(..., help=SOURCE_HELP),
    update: bool = typer.Option(False, "--update", help="Replace documents whose id is already in the index."),
    skip_bad: bool = SkipBadOpt,
    wait: float = WaitOpt,
) -> None:
    """Add (or with --update, add or replace) the documents of SOURCE, as one commit."""
    from cascade.data import ReadReport, count_lines, open_corpus
    from cascade.index.index import Index

    with user_errors(WAIT_HINT):
        idx = Index.open(index_dir, verify=False)
        report = ReadReport()
        docs = open_corpus(source, skip_bad=skip_bad, report=report)
        start = time.perf_counter()
        with progress(f"adding {source_name(source)}", count_lines(source), "docs") as bar:
            added, replaced = idx.write(docs, update=update, wait=wait, progress=bar.update, phase=bar.relabel)
        seconds = time.perf_counter() - start
        idx = idx.refresh()
        what = f"added {plural(added, 'document')}"
        if update:
            what += f" ({plural(replaced, 'replaced an old version', 'replaced old versions')})"
        err.print(f"{what} to {index_dir} in {seconds:.2f} s; {plural(idx.n_docs, 'document')}, "
                  f"{plural(len(idx.segments), 'segment')}{skipped_note(report)}")


@app.command()
def delete(
    index_dir: Path = typer.Argument(..., help="Index directory."),
    ids: list[str] = typer.Option([], "--id", help="Id of a document to delete (repeatable)."),
    where: Optional[str] = typer.Option(None, "--where", help='Delete the documents matching this filter, '
                                                              'e.g. \'year < 2000 AND lang = "de"\'.'),
    wait: float = WaitOpt,
) -> None:
    """Delete documents by id and/or by filter, as one commit.

    Ids with no live document are named; when nothing was deleted because no id matched,
    the command fails (exit status 1). A --where alone that matches nothing is not an error."""
    from cascade.index.index import Index

    with user_errors(WAIT_HINT):
        if not ids and where is None:
            raise CascadeError("say what to delete: --id ID (repeatable) and/or --where FILTER")
        idx = Index.open(index_dir, verify=False)
        probe = [f"{doc_id}#0" for doc_id in ids] if idx.passages else ids  # a passage index: documents' first passages
        missing = [doc_id for doc_id, num in zip(ids, idx.doc_numbers(probe).tolist()) if num < 0]
        n = idx.delete(ids, where=where, wait=wait)
        if n == 0 and missing:
            also = ", and none matches --where" if where is not None else ""
            raise CascadeError(f"nothing deleted from {index_dir}: {not_found(missing)}{also}")
        idx = idx.refresh()
        if missing:
            err.print(f"not found: {not_found(missing)}")
        none_matched = " (no live document matches --where)" if n == 0 and where is not None else ""
        err.print(f"deleted {plural(n, 'document')} from {index_dir}{none_matched}; {idx.n_docs:,} left")


def not_found(ids: list[str], shown: int = 5) -> str:
    """``no live document with id 'a'`` or ``no live documents with ids 'a', 'b' (and 3 more)``."""
    listed = ", ".join(repr(i) for i in ids[:shown]) + (f" (and {len(ids) - shown} more)" if len(ids) > shown else "")
    return f"no live document with id {listed}" if len(ids) == 1 else f"no live documents with ids {listed}"


@app.command()
def optimize(
    index_dir: Path = typer.Argument(..., help="Index directory."),
    policy: bool = typer.Option(False, "--policy", help="Only the merges the tiered policy asks for, "
                                                        "instead of merging everything into one segment."),
    wait: float = WaitOpt,
) -> None:
    """Merge segments and drop deleted documents (searches stay correct meanwhile)."""
    from cascade.index.index import Index
    from cascade.index.merge import TieredMergePolicy

    with user_errors(WAIT_HINT):
        idx = Index.open(index_dir, verify=False)
        before = len(idx.segments)
        start = time.perf_counter()
        idx.optimize(policy=TieredMergePolicy() if policy else None, wait=wait)
        idx = idx.refresh()
        err.print(f"{index_dir}: {before} -> {len(idx.segments)} segment(s), {plural(idx.n_docs, 'document')}, "
                  f"in {time.perf_counter() - start:.2f} s")


@app.command()
def search(
    index_dir: Path = typer.Argument(..., help="Index directory."),
    query: str = typer.Argument(..., help="Query text."),
    k: int = typer.Option(10, "-k", help="Number of hits."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: the query, and per hit its rank, "
                                                    "id, score, title, text and metadata."),
    k1: float = typer.Option(bm25_formula.K1, help="BM25 k1 (with -p: of every bm25, rm3, bm25_rm3 stage that "
                                                   "does not set it)."),
    b: float = typer.Option(bm25_formula.B, help="BM25 b (with -p: as --k1)."),
    pipeline: Optional[str] = typer.Option(None, "-p", "--pipeline",
                                           help="Search with a pipeline instead of BM25, e.g. 'bm25 % 100 >> maxsim'."),
    where: Optional[str] = typer.Option(None, "--where", help='Only documents matching this filter, '
                                                              'e.g. \'year >= 2020 AND lang IN ("en", "de")\'.'),
    ray: Optional[str] = typer.Option(None, "--ray", help="A sharded index: search its shards on the Ray cluster "
                                                          "at ADDRESS ('auto', or 'local' for a private one)."),
    passages: bool = typer.Option(False, "--passages", help="A passage index: show passages (ids DOC#N) instead of "
                                                            "documents shown by their best passage."),
) -> None:
    """Search an index (BM25, or any pipeline) and print the hits."""
    from cascade.index.index import Index
    from cascade.retrieve.bm25 import BM25

    with user_errors():
        if k < 1:
            raise CascadeError("-k must be at least 1")
        start = time.perf_counter()
        if sharded_dir(index_dir):
            if pipeline is not None:
                raise CascadeError("a sharded index is searched with BM25 here (--pipeline: not yet)")
            hits = sharded_hits(index_dir, query, k, k1, b, where, ray)
            if as_json:
                print(hits_json(query, hits, time.perf_counter() - start))
            else:
                print_hits(query, hits, time.perf_counter() - start)
            return
        idx = Index.open(index_dir)
        if pipeline is None and (passages or not idx.passages):
            hits = BM25(idx, k1=k1, b=b).search(query, k=k, where=where)
        elif pipeline is None:  # a passage index: documents by their best passage
            from cascade.fuse.to_docs import ToDocs

            cands = (BM25(idx, k1=k1, b=b, where=where, k=max(1000, 20 * k)) >> ToDocs(idx) % k)([query])
            hits = cands.hits(0, source=idx)
        elif where is not None:
            raise CascadeError("with --pipeline, give the filter to its first stage: e.g. -p 'bm25(where=\"year >= 2020\") % 100 >> maxsim'")
        else:
            hits = pipeline_hits(idx, pipeline, query, k, bm25_settings(k1, b), passages=passages)
        seconds = time.perf_counter() - start
        if as_json:
            print(hits_json(query, hits, seconds))
            return
        print_hits(query, hits, seconds)


@app.command()
def ask(
    index_dir: Path = typer.Argument(..., help="Index directory (a passage index gives passage citations)."),
    question: str = typer.Argument(..., help="The question."),
    pipeline: str = typer.Option("bm25 % 20 >> budget(tokens=1000)", "-p", "--pipeline",
                                 help="Retrieval and context selection, e.g. 'bm25 % 50 >> mmr(k=8)'."),
    model: str = typer.Option("llama-cpp:qwen", "--model", help="LLM: llama-cpp:qwen, llama-cpp:smollm2, "
                              "llama-cpp:/m.gguf, openai:http://HOST/v1#MODEL, transformers:DIR."),
    k: int = typer.Option(10, "-k", help="At most this many passages of the pipeline's output in the context."),
    max_words: int = typer.Option(200, "--max-words", help="Each passage is cut to this many words in the prompt."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Length limit of the answer, in model tokens."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="Prompt template file with {question}, "
                                          "{passages} and {max_sentences}."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the persistent LLM call cache."),
    as_json: bool = typer.Option(False, "--json", help="Print the TREC RAG (Ragnarök) answer object: references, "
                                 "answer sentences with citations (plus Cascade's account under 'cascade')."),
) -> None:
    """Answer a question from an index with an LLM, citing the passages it was given."""
    from cascade.index.index import Index
    from cascade.rag.ask import AskOptions
    from cascade.rag.ask import ask as ask_index

    with user_errors():
        opts = AskOptions(k=k, max_words=max_words, max_tokens=max_tokens,
                          prompt=None if prompt is None else str(prompt))
        opts.check()
        idx = Index.open(index_dir)
        backend = None
        if no_cache:
            from cascade.llm import open_backend

            backend = open_backend(model, cache=False)
        with progress(f"answering with {model}"):
            answer = ask_index(idx, question, pipeline=pipeline, model=model, backend=backend, options=opts)
        if as_json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False))
            return
        print_answer(answer)


def print_answer(answer: Any) -> None:
    """`cascade ask`: the answer with [n] markers, the passages it was given, dropped citations."""
    if not answer.references:
        out.print("No passage of the index matches the question; nothing was asked of the model.")
        return
    out.print(answer.text() or "(the model gave no answer)", soft_wrap=True)
    out.print()
    cited = {r.number for r in answer.cited()}
    out.print("Passages given to the model (* cited):")
    for r in answer.references:
        words = " ".join((r.title + " " + r.text).split()[:16])
        doc = f" (in {r.doc_id})" if r.doc_id != r.id else ""
        out.print(f" {'*' if r.number in cited else ' '}[{r.number}] {r.id}{doc}: {words}", soft_wrap=True)
    for sentence, number in answer.dropped:
        err.print(f"note: dropped citation [{number}] of sentence {sentence + 1}: the context had "
                  f"{plural(len(answer.references), 'passage')}")
    usage = answer.usage
    if usage:
        err.print(f"{int(usage.get('calls', 0))} call ({int(usage.get('cached_calls', 0))} cached), "
                  f"{int(usage.get('prompt_tokens', 0))} + {int(usage.get('completion_tokens', 0))} tokens, "
                  f"{usage.get('seconds', 0.0):.1f} s")


def sharded_dir(path: Path) -> bool:
    """Whether ``path`` is a sharded index (its SHARDS.json; no Ray or numpy imported)."""
    return (path / "SHARDS.json").is_file()


def sharded_hits(path: Path, query: str, k: int, k1: float, b: float, where: str | None,
                 ray: str | None) -> list[Any]:
    """BM25 hits over a sharded index, on Ray when ``ray`` is given."""
    from cascade.scale.search import ShardedBM25
    from cascade.scale.sharded import ShardedIndex

    with ShardedIndex.open(path, ray=(True if ray == "local" else ray)) as sidx:
        return ShardedBM25(sidx, k1=k1, b=b, k=k, where=where).hits(query, k=k)


def bm25_settings(k1: float, b: float) -> dict[str, dict[str, Any]]:
    """Context.stage_defaults giving --k1/--b to a pipeline's BM25 stages (none when they are
    the defaults, so a plain search never imports the evaluation package)."""
    if (k1, b) == (bm25_formula.K1, bm25_formula.B):
        return {}
    from cascade.evaluation.experiment import EvalOptions, bm25_defaults

    return bm25_defaults(EvalOptions(k1=k1, b=b))


def hits_json(query: str, hits: list[Any], seconds: float) -> str:
    """``cascade search --json``: one object with each hit's rank, id, score and stored fields."""
    rows = [{"rank": rank, "id": h.id, "score": round(h.score, 4), "title": h.title, "text": h.text, "meta": h.meta}
            for rank, h in enumerate(hits, 1)]
    return json.dumps({"query": query, "hits": rows, "seconds": round(seconds, 4)}, ensure_ascii=False, default=str)


def pipeline_hits(idx: Any, text: str, query: str, k: int,
                  stage_defaults: dict[str, dict[str, Any]] | None = None, passages: bool = False) -> list[Any]:
    from cascade.core.registry import Context
    from cascade.pipeline.parse import parse

    with progress("preparing the pipeline") as bar:
        ctx = Context.of(index=idx)
        ctx.on_progress = phase_hook(bar)
        ctx.stage_defaults = stage_defaults or {}
        cands = (parse(text, ctx, passages=passages) % k)([query])  # not .search: a lone bm25 stage's returns Hits
    return cands.hits(0, source=idx)


def short_query(query: str, limit: int = TITLE_QUERY_CHARS) -> str:
    """``query`` on one line, quoted, cut to about ``limit`` characters (a table title)."""
    flat = " ".join(query.split())
    return repr(flat if len(flat) <= limit else flat[:limit - 1] + "…")


def print_hits(query: str, hits: list[Any], seconds: float) -> None:
    title = f"{short_query(query)}: {plural(len(hits), 'hit')} in {seconds * 1000:.1f} ms"
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column("#", justify="right", no_wrap=True, min_width=2)
    table.add_column("score", justify="right", no_wrap=True, min_width=6)
    table.add_column("id", no_wrap=True, overflow="ellipsis", max_width=45)
    table.add_column("text", overflow="ellipsis", no_wrap=True, ratio=1)
    for rank, h in enumerate(hits, 1):
        snippet = " ".join((h.text or h.title).split())
        table.add_row(str(rank), f"{h.score:.3f}", h.id, snippet)
    out.print(table)


@app.command("eval")
def eval_(
    dataset: Path = typer.Argument(..., help="BEIR-layout dataset dir (corpus.jsonl, queries.jsonl, qrels/)."),
    index_dir: Optional[Path] = typer.Option(None, "--index",
                                             help="Use this index (built from DATASET) instead of the cached one."),
    pipeline: list[str] = typer.Option([], "--pipeline", "-p",
                                       help="Pipeline to evaluate (repeatable), e.g. 'bm25 % 100', 'rrf(bm25, bm25_rm3)'."),
    run: list[str] = typer.Option([], "--run", help="Evaluate a stored TREC run (repeatable; may be relative to DATASET)."),
    metrics: str = typer.Option("nDCG@10,R@100", help="Comma-separated ir_measures names."),
    split: str = typer.Option("test", help="qrels split (qrels/<split>.tsv)."),
    baseline: Optional[int] = typer.Option(None, "--baseline", help="Test every other pipeline against this one (0 = first)."),
    save_run: Optional[Path] = typer.Option(None, "--save-run", help="Write each pipeline's run in TREC format, tagged "
                                            "with the pipeline (FILE, or FILE-<i> for pipeline i of several)."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Write a Markdown report."),
    plot_file: Optional[Path] = typer.Option(None, "--plot", help="Write an effectiveness-vs-latency plot (PNG)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    per_query: bool = typer.Option(False, "--per-query", help="Include per-query values in --json output."),
    k1: float = typer.Option(bm25_formula.K1, help="BM25 k1 of every bm25, rm3, bm25_rm3 stage that does not set it."),
    b: float = typer.Option(bm25_formula.B, help="BM25 b of every bm25, rm3, bm25_rm3 stage that does not set it."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the index and stage caches."),
    permutations: int = typer.Option(10_000, help="Randomisation-test permutations."),
    skip_bad: bool = SkipBadOpt,
    stopwords: Optional[str] = typer.Option(None, help="Stopword list: english (Lucene's, the default), snowball, "
                                            "none. With --index it must be the index's."),
    stemmer: Optional[str] = typer.Option(None, help="Snowball stemmer language (PyStemmer; default english), or "
                                          "none. With --index it must be the index's."),
    lowercase: Optional[bool] = typer.Option(None, "--lowercase/--no-lowercase", help="Fold case (default yes)."),
    judge_holes: Optional[Path] = typer.Option(None, "--judge-holes", help="Qrels from `cascade judge`: labels for "
                                               "the pairs the split's qrels lack (human labels always win)."),
    sessions: Optional[Path] = typer.Option(None, "--sessions", help="Session file ('SESSION_ID QUERY_ID' lines in "
                                            "issue order): also report sDCG@10, nsDCG@10 and NUM@10 per pipeline."),
    split_by_training: Optional[Path] = typer.Option(None, "--split-by-training", help="Training queries "
                                                     "(queries.jsonl or its directory): metrics per interpolation / "
                                                     "extrapolation split (median similarity to training queries)."),
) -> None:
    """Evaluate pipelines (default: bm25) and stored runs on a dataset, stage by stage."""
    from cascade.evaluation.experiment import EvalOptions, run_experiment
    from cascade.evaluation.experiment import Progress as Hooks
    from cascade.evaluation.render import to_json
    from cascade.evaluation.report import check_output_file, check_plotting, write_files

    with user_errors():
        pipelines = pipeline or ([] if run else ["bm25"])
        for option, path in (("--report", report_file), ("--plot", plot_file)):
            check_output_file(option, path)  # before a long evaluation, not after it
        if plot_file is not None:
            check_plotting()
        analyzer = None if (stopwords, stemmer, lowercase) == (None, None, None) else \
            analyzer_from(stopwords or "english", stemmer or "english", lowercase is not False)
        prepare_kernels()
        opts = EvalOptions(metrics=metrics, split=split, k1=k1, b=b, skip_bad=skip_bad, baseline=baseline,
                           analyzer=analyzer, use_cache=not no_cache, save_run=save_run, permutations=permutations,
                           judge_holes=judge_holes, sessions=sessions, split_by_training=split_by_training)
        saved: list[str] = []
        with progress(f"reading {dataset.name}") as bar:
            hooks = Hooks(indexing=bar.update, searching=bar.update, phase=bar.relabel,
                          saved=lambda i, r: saved.append(f"wrote the run of #{i} {r.label} to {r.run_file}"))
            result = run_experiment(dataset, pipelines, runs=run, index_dir=index_dir, opts=opts, progress=hooks)
        for line in saved:
            err.print(line, highlight=False, markup=False)
        if result.skipped:
            err.print(f"{plural(result.skipped, 'bad record')} skipped, e.g. {result.problems[0]}")
        if as_json:
            print(to_json(result, per_query=per_query))
        else:
            print_eval(result)
        command = eval_command(dataset, pipeline, run, metrics, baseline, split,
                               index_dir=index_dir, k1=k1, b=b, stopwords=stopwords, stemmer=stemmer)
        for option, value in (("--judge-holes", judge_holes), ("--sessions", sessions),
                              ("--split-by-training", split_by_training)):
            if value is not None:
                command += f" {option} {shlex.quote(str(value))}"
        write_files(result, report_file, plot_file, command=command,
                    say=lambda line: err.print(line, highlight=False, markup=False))


def eval_command(dataset: Path, pipelines: list[str], runs: list[str], metrics: str, baseline: Optional[int],
                 split: str, *, index_dir: Optional[Path] = None, k1: float = bm25_formula.K1,
                 b: float = bm25_formula.B, stopwords: Optional[str] = None, stemmer: Optional[str] = None) -> str:
    """The `cascade eval` command line that reproduces an experiment (for reports)."""
    parts = ["cascade", "eval", shlex.quote(str(dataset))]
    if index_dir is not None:
        parts.append(f"--index {shlex.quote(str(index_dir))}")
    parts += [f"--run {shlex.quote(r)}" for r in runs] + [f"--pipeline {shlex.quote(p)}" for p in pipelines]
    parts += [f"--metrics {shlex.quote(metrics)}", f"--split {shlex.quote(split)}"]
    if baseline is not None:
        parts.append(f"--baseline {baseline}")
    parts += [f"--{name} {value}" for name, value, default in (("k1", k1, bm25_formula.K1), ("b", b, bm25_formula.B))
              if value != default]
    parts += [f"--{name} {shlex.quote(value)}" for name, value in (("stopwords", stopwords), ("stemmer", stemmer))
              if value is not None]
    return " ".join(parts)


def print_eval(result: Any) -> None:
    """The experiment's tables on the terminal (see cascade.evaluation.render)."""
    from cascade.evaluation.render import rich_tables

    for renderable in rich_tables(result):
        out.print(renderable, highlight=False)


@app.command()
def judge(
    dataset: Path = typer.Argument(..., help="BEIR-layout dataset dir (corpus.jsonl, queries.jsonl, qrels/)."),
    run: str = typer.Option(..., "--run", help="TREC run whose top pairs are judged (may be relative to DATASET)."),
    model: str = LlmModelOpt,
    depth: int = typer.Option(20, "--depth", help="Judge each query's top DEPTH documents of the run."),
    all_pairs: bool = typer.Option(False, "--all", help="Judge every pair, also those the human qrels label."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Qrels file to write (default: "
                                            "judged-<run name>.qrels in the current directory)."),
    limit_queries: Optional[int] = typer.Option(None, "--limit-queries", help="Only the run's first N queries."),
    method: str = typer.Option("auto", "--method", help="auto (log-probs when the backend has them), "
                               "logprobs, or generate (parse '##final score: N')."),
    rule: str = typer.Option("argmax", "--rule", help="With log-probs: argmax, or expected (expected grade, rounded)."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="Prompt template file with {query} and {passage}."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per backend call."),
    split: str = typer.Option("test", help="Human qrels split (qrels/<split>.tsv) whose pairs are skipped."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the persistent LLM call cache."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: counts, labels, usage."),
) -> None:
    """Label a run's top documents 0-3 with an LLM judge (UMBRELA-style) and write TREC qrels."""
    from cascade.evaluation.judge import Judge, JudgeOptions, judge_selection, select_pairs, write_qrels

    with user_errors():
        if limit_queries is not None and limit_queries < 1:
            raise CascadeError("--limit-queries must be at least 1")
        target = out_file or Path(f"judged-{Path(run).stem}.qrels")
        if target.is_dir():
            raise CascadeError(f"--out {target}: is a directory")
        opts = JudgeOptions(depth=depth, all_pairs=all_pairs, limit_queries=limit_queries, split=split)
        selection = select_pairs(dataset, run, opts)
        if not selection.pairs:
            err.print(f"nothing to judge: all {plural(selection.considered, 'pair')} in the top {depth} of "
                      f"{plural(selection.queries, 'query', 'queries')} have human labels (--all judges them too)")
            return
        from cascade.llm import open_backend

        backend = open_backend(model, cache=not no_cache)
        judger = Judge(backend, method=method, rule=rule, template=prompt, batch_size=batch_size)
        with progress(f"judging with {model}", len(selection.pairs), "pairs") as bar:
            result = judge_selection(judger, selection, lambda done, total: bar.update(done))
        write_qrels(result.qrels(), target)
        if as_json:
            print(json.dumps({**result.summary(), "out": str(target)}))
            return
        print_judged(result, target)


def print_judged(result: Any, target: Path) -> None:
    """`cascade judge`'s summary: what was judged, the labels, what it cost."""
    u = result.usage
    counts = ", ".join(f"{label}: {n}" for label, n in result.label_counts().items())
    out.print(f"judged {plural(len(result.judgements), 'pair')} with {result.model} ({result.method}); "
              f"{result.already_judged:,} of {result.considered:,} top pairs already had human labels")
    out.print(f"labels {counts}" + (f"; {result.failed} answers unreadable (labelled 0)" if result.failed else ""))
    out.print(f"{u.get('calls', 0):,} calls ({u.get('cached_calls', 0):,} cached), "
              f"{u.get('prompt_tokens', 0):,} prompt + {u.get('completion_tokens', 0):,} completion tokens, "
              f"{result.seconds:.1f} s")
    out.print(f"wrote {target}")


@app.command("judge-agreement")
def judge_agreement(
    dataset: Path = typer.Argument(..., help="BEIR-layout dataset dir with human qrels (qrels/<split>.tsv)."),
    judged: Path = typer.Option(..., "--judged", help="The judge's qrels (from `cascade judge`)."),
    runs: list[Path] = typer.Option([], "--runs", help="Run files or directories of them (repeatable; default: "
                                    "DATASET/runs when it exists) for Kendall's tau between system orderings."),
    threshold: int = typer.Option(2, "--binary-threshold", help="Grades at least this are relevant (binary kappa)."),
    metric: str = typer.Option("nDCG@10", "--metric", help="Metric that orders the systems (ir_measures name)."),
    split: str = typer.Option("test", help="Human qrels split (qrels/<split>.tsv)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
) -> None:
    """Agreement of a judge's qrels with human qrels: Cohen's kappa, confusion, Kendall's tau."""
    from cascade.data.beir import BeirDataset
    from cascade.evaluation.agreement import agreement_report
    from cascade.evaluation.judge import read_judged_qrels
    from cascade.evaluation.metrics import parse_metrics

    with user_errors():
        parse_metrics(metric)
        data = BeirDataset(dataset)
        human = data.qrels(split)
        llm = read_judged_qrels(judged, data, human)
        loaded = load_runs(runs or ([data.root / "runs"] if (data.root / "runs").is_dir() else []))
        report = agreement_report(human, llm, loaded, threshold=threshold, metric=metric)
        if as_json:
            print(json.dumps(report.to_dict()))
            return
        print_agreement(report)


def load_runs(paths: list[Path]) -> dict[str, Any]:
    """name -> run for each TREC run file given, or in a directory given (``*.trec``, ``*.run``, ``*.txt``)."""
    from cascade.data.trec import read_trec_run

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".trec", ".run", ".txt"))
            if not found:
                raise DataError(path, "no run files (*.trec, *.run, *.txt) in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(path, "no such run file or directory")
    return {p.name.removesuffix(".trec"): read_trec_run(p) for p in files}


def print_agreement(report: Any) -> None:
    """The kappa line, the confusion matrix and the system-order table."""
    a = report.pairs
    out.print(f"{plural(a.pairs, 'pair')} judged by both ({a.judge_only:,} by the judge only): "
              f"kappa {a.kappa:.3f} (4-level), {a.kappa_binary:.3f} (binary, relevant >= {a.threshold}), "
              f"exact agreement {a.accuracy:.1%}")
    table = Table(title="confusion: rows human, columns judge")
    table.add_column("human \\ judge")
    for label in a.labels:
        table.add_column(str(label), justify="right")
    for label, row in zip(a.labels, a.confusion):
        table.add_row(str(label), *(f"{n:,}" for n in row))
    out.print(table)
    for s in report.systems:
        tau = f"{s.tau:.3f} (p={s.p_value:.3f})" if s.defined else "undefined (an ordering of all ties)"
        t = Table(title=f"{s.metric} under human vs judge qrels ({s.kind}), {s.queries} queries: "
                        f"Kendall's tau {tau}")
        for col in ("system", "human", "judge"):
            t.add_column(col, justify="left" if col == "system" else "right")
        for name, h, j in zip(s.systems, s.human, s.judge):
            t.add_row(name, f"{h:.4f}", f"{j:.4f}")
        out.print(t)


cache_app = typer.Typer(help="Manage Cascade's caches (indexes built by eval, stage outputs).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("clear")
def cache_clear(
    stages_only: bool = typer.Option(False, "--stages-only", help="Keep cached indexes; clear stage outputs only."),
) -> None:
    """Delete cached stage outputs and (unless --stages-only) cached indexes."""
    import shutil

    from cascade.core.paths import cache_root
    from cascade.pipeline.cache import StageCache

    with user_errors():
        n = StageCache().clear()
        msg = f"cleared {plural(n, 'cached stage output')}"
        indexes = cache_root() / "indexes"
        if not stages_only and indexes.exists():
            count = sum(1 for entry in indexes.iterdir() if entry.is_dir() and not entry.name.startswith("."))
            shutil.rmtree(indexes)
            msg += f" and {plural(count, 'cached index', 'cached indexes')}"
        out.print(f"{msg} ({cache_root()})")


@cache_app.command("info")
def cache_info() -> None:
    """Show where the caches are and how big they are."""
    from cascade.core.paths import cache_root

    root = cache_root()
    for name in ("indexes", "stages"):
        path = root / name
        files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
        size = sum(p.stat().st_size for p in files)
        out.print(f"{path}: {plural(len(files), 'file')}, {size / 1e6:.1f} MB")


@app.command()
def info(index_dir: Path = typer.Argument(..., help="Index directory.")) -> None:
    """Show an index's size, analyzer and segments."""
    from cascade.index.index import Index

    with user_errors():
        idx = Index.open(index_dir)
        m = idx.manifest
        deleted = sum(s.n_deleted for s in m.segments)
        out.print(f"{index_dir}: {plural(idx.n_docs, 'document')}, {len(m.segments)} segment(s), "
                  f"generation {m.generation}")
        if deleted:
            out.print(f"{plural(deleted, 'deleted document')} not yet merged away (cascade optimize drops them)")
        if m.filter_fields:
            out.print("filter fields: " + ", ".join(f"{k} ({v})" for k, v in m.filter_fields.items()))
        if idx.passages:
            out.print(f"passage index: documents split into passages of at most {idx.passages['tokens']} words, "
                      f"overlapping by up to {idx.passages['overlap']} (entries above are passages)")
        out.print(f"analyzer: {m.analyzer}")
        out.print(f"fields: {', '.join(m.fields)}; average length {idx.avg_doc_length:.1f} terms")
        for s in m.segments:
            size = sum(f.size for f in s.files.values())
            live = f" ({s.n_deleted:,} deleted)" if s.n_deleted else ""
            out.print(f"  {s.name}: {plural(s.n_docs, 'doc')}{live}, {plural(s.n_terms, 'term')}, "
                      f"{plural(s.n_postings, 'posting')}, {size / 1e6:.1f} MB")
        for name, spec in sorted(m.representations.items()):
            out.print(f"representation {name}: {spec}")


@app.command()
def encode(
    index_dir: Path = typer.Argument(..., help="Index directory."),
    model: Optional[str] = typer.Option(None, "-m", "--model",
                                        help="minilm | mpnet | splade-tiny | a model directory or hub id. Without "
                                             "it: store every representation the index lists for each segment "
                                             "lacking it (an index with none gets minilm)."),
    kind: str = typer.Option("biencoder", help="biencoder (dense + token vectors) | sparse (SPLADE postings)."),
    tokens: bool = typer.Option(True, "--tokens/--no-tokens", help="Also store token vectors (for maxsim)."),
) -> None:
    """Encode an index's documents with a neural model once and store the result in the index.

    One commit per segment: an encoding that is killed keeps the segments it finished, and
    running the command again continues with the others."""
    from cascade.index import representations
    from cascade.index.index import Index

    with user_errors():
        if kind not in ("biencoder", "sparse"):
            raise CascadeError(f"--kind must be biencoder or sparse (got {kind!r})")
        idx = Index.open(index_dir)
        start = time.perf_counter()
        if model is None and idx.manifest.representations:
            todo = representations.missing(idx)
            if not todo:
                err.print(f"{index_dir}: every segment has every representation "
                          f"({', '.join(sorted(idx.manifest.representations))}); nothing to encode")
                return
            with progress(f"storing {', '.join(todo)}", None, "docs") as bar:
                done = representations.complete(idx, reporter=bar_reporter(bar))
            err.print(f"{index_dir}: stored {', '.join(done)} for every segment lacking them "
                      f"({time.perf_counter() - start:.1f} s)")
            return
        model = model or "minilm"
        with progress(f"encoding {plural(idx.n_docs, 'document')} with {model}", idx.n_docs, "docs") as bar:
            tick = bar.update
            if kind == "sparse":
                from cascade.retrieve.learned_sparse import encode_sparse

                idx = encode_sparse(idx, model, progress=tick)
            else:
                from cascade.models.stored import encode_biencoder

                idx = encode_biencoder(idx, model, tokens=tokens, progress=tick)
        err.print(f"{index_dir}: representations {', '.join(sorted(idx.manifest.representations))} "
                  f"({time.perf_counter() - start:.1f} s)")


def bar_reporter(bar: Any) -> Any:
    """A representation reporter (label, total) -> progress that shows each phase on ``bar``."""
    from contextlib import contextmanager

    @contextmanager
    def report(label: str, total: int) -> Iterator[Any]:
        bar.relabel(label, total)
        yield bar.update

    return report


@app.command()
def check(
    index_dir: Path = typer.Argument(..., help="Index directory."),
    repair: bool = typer.Option(False, "--repair", help="First remove what no commit lists: unlisted segments and "
                                "files, temporary files, and killed builds' temporary directories beside it."),
) -> None:
    """Verify every index file against the checksums in its manifest, and its structure.

    Files no commit lists (what a killed or failed write left: unlisted segments, representation
    files, temporary files) are named as warnings; --repair removes them. Representations some
    segment lacks (a killed encoding) are named too: `cascade encode INDEX` completes them."""
    from cascade.index.index import repair_index

    with user_errors():
        if repair:
            removed = repair_index(index_dir)
            for path, size in removed:
                out.print(f"removed: {path} ({size:,} bytes)", highlight=False, soft_wrap=True)
            total = sum(size for _, size in removed)
            out.print(f"{index_dir}: removed {len(removed)} unlisted item(s), {total:,} bytes", highlight=False,
                      soft_wrap=True)
        problems = index_problems(index_dir)
        for p in problems:
            err.print(f"damaged: {p}")
        if problems:
            raise typer.Exit(1)
        for warning in index_warnings(index_dir):
            err.print(f"warning: {warning}", soft_wrap=True)
        out.print(f"{index_dir}: ok")


def index_warnings(index_dir: Path) -> list[str]:
    """What ``cascade check`` notes about an intact index: files no commit lists (debris of a
    killed or failed write, or the files of a writer running now) and representations some
    segment lacks."""
    from cascade.core.errors import BadIndexError
    from cascade.index import representations
    from cascade.index.debris import find_debris
    from cascade.index.fsutil import tree_size
    from cascade.index.index import Index

    notes = []
    try:
        for path in find_debris(index_dir):
            try:
                size = tree_size(path)
            except OSError:
                continue  # gone meanwhile (a writer committed or tidied)
            notes.append(f"{path}: not listed by any commit ({size:,} bytes): left by a killed or failed write "
                         "(or written by a writer running now); cascade check --repair removes it")
        idx = Index.open(index_dir, verify=False)
    except (BadIndexError, OSError):
        return notes
    try:
        for name in representations.missing(idx):
            notes.append(f"representation {name!r} is missing from some segments (a killed encoding?); "
                         f"`cascade encode {index_dir}` stores it for them")
    finally:
        idx.close()
    return notes


def index_problems(index_dir: Path) -> list[str]:
    """Every problem ``cascade check`` finds: those of ``verify_latest`` (it opens the newest
    commit and re-hashes its files); when the index cannot even be opened, every listed file
    that is missing, of the wrong size or checksum (found without opening it), or else the
    reason it cannot be opened. A missing index or manifest is a user error, not a list."""
    from cascade.core.errors import BadIndexError
    from cascade.index.index import verify_latest
    from cascade.index.manifest import MANIFEST_NAME

    try:
        index, problems = verify_latest(index_dir)
    except BadIndexError as exc:
        if not (index_dir / MANIFEST_NAME).is_file():
            raise
        return listed_file_problems(index_dir) or [str(exc)]
    index.close()
    return problems


def listed_file_problems(index_dir: Path) -> list[str]:
    """Each file the manifest lists that is missing, has the wrong size, or the wrong checksum
    (sizes first: a truncated file is not hashed); an unreadable manifest is the one problem."""
    from cascade.core.errors import BadIndexError
    from cascade.index.fsutil import file_digest
    from cascade.index.manifest import Manifest

    try:
        manifest = Manifest.read(index_dir)
    except (BadIndexError, OSError) as exc:
        return [str(exc)]
    problems = []
    for seg in manifest.segments:
        if not (index_dir / seg.name).is_dir():
            problems.append(f"{index_dir / seg.name}: segment directory missing")
            continue
        for name, meta in seg.files.items():
            path = index_dir / seg.name / name
            try:
                size = path.stat().st_size
                if size != meta.size:
                    problems.append(f"{path}: size {size:,}, manifest says {meta.size:,}")
                elif file_digest(path) != meta.blake2b:
                    problems.append(f"{path}: checksum mismatch")
            except FileNotFoundError:
                problems.append(f"{path}: missing")
            except OSError as exc:
                problems.append(f"{path}: unreadable ({exc.strerror or exc})")
    return problems


# -- cascade train ---------------------------------------------------------------------------

train_app = typer.Typer(help="Train Cascade's own models (cross-encoder, late-interaction head, dense) from judged "
                        "or synthetic queries; write synthetic queries.", no_args_is_help=True)
app.add_typer(train_app, name="train")
TrainDatasetArg = typer.Argument(..., help="BEIR-layout dataset dir whose corpus the training ids refer to.")
TrainingOpt = typer.Option(..., "--training", help="Judged training queries: a folder with queries.jsonl and "
                           "qrels/train.tsv (+ optional qrels/dev.tsv), e.g. from `cascade train synthetic`.")
ModelOutOpt = typer.Option(..., "--out", help="Directory for the trained model (new, or one Cascade trained).")
BaseOpt = typer.Option("minilm", "--base", help="Model to start from: alias, directory or hub id.")
EpochsOpt = typer.Option(1, "--epochs", help="Passes over the training examples.")
BatchOpt = typer.Option(16, "--batch-size", help="Examples per step.")
LrOpt = typer.Option(2e-5, "--lr", help="Peak learning rate (linear warm-up over the first 10% of steps).")
MaxLengthOpt = typer.Option(256, "--max-length", help="Tokens per text (cross-encoder: per query-document pair).")
NegativesOpt = typer.Option(4, "--negatives", help="Hard negatives per (query, relevant document).")
RandomNegativesOpt = typer.Option(0, "--random-negatives", help="Of the negatives, how many are random documents "
                                  "of the collection (easy: a first signal for a new cross-encoder head).")
MinerOpt = typer.Option("bm25 % 30", "--miner", help="Pipeline whose top non-relevant documents are the hard "
                        "negatives (also the dev check's candidates).")
DevFractionOpt = typer.Option(0.1, "--dev-fraction", help="Training queries held out for the dev check (when the "
                              "folder has no qrels/dev.tsv).")
DevQueriesOpt = typer.Option(100, "--dev-queries", help="Dev queries the dev check uses (a seeded sample).")
MaxExamplesOpt = typer.Option(None, "--max-examples", help="Train on a seeded sample of at most N examples.")
TeacherOpt = typer.Option(None, "--teacher", help="Distil this pipeline's scores (MarginMSE on its margins), e.g. "
                          "'bm25 % 100 >> cross_encoder(model=DIR)'.")
SeedOpt = typer.Option(0, "--seed", help="Seed of the dev split, the negatives' sampling, the data order and the "
                       "new weights.")
ThreadsOpt = typer.Option(None, "--threads", help="torch threads (default: every CPU).")
KeepOpt = typer.Option("best", "--keep", help="Which epoch's weights to save: best (the dev check's best) or last.")


def run_training(kind: str, dataset: Path, training: Path, out_dir: Path, settings: dict[str, Any],
                 teacher: Optional[str], dim: Optional[int] = None) -> None:
    """Train one kind of model and print what it became (the `cascade train` commands' body)."""
    from cascade.train import cross_encoder, dense, late_interaction
    from cascade.train.examples import check_disjoint, collection_index, judged_test_queries, split_dev
    from cascade.train.run import TrainConfig, target_dir

    with user_errors():
        config = TrainConfig(**settings)
        target_dir(out_dir)  # before minutes of work, not after
        split = split_dev(training, dev_fraction=config.dev_fraction, seed=config.seed)
        check_disjoint([*split.train.queries, *split.dev.queries], judged_test_queries(dataset),
                       f"test queries of {dataset.name}")
        with progress(f"reading {dataset.name}") as bar:
            index = collection_index(dataset, progress=bar.update)
        say = lambda line: err.print(line, highlight=False, markup=False)  # noqa: E731
        say(f"training a {kind} on {len(split.train.queries):,} queries ({len(split.dev.queries):,} dev: "
            f"{split.dev_source}), negatives from {config.miner!r}")
        if kind == "cross-encoder":
            result = cross_encoder.train_cross_encoder(index, split, out_dir, config, teacher=teacher, report=say)
        elif kind == "dense":
            result = dense.train_dense(index, split, out_dir, config, teacher=teacher, report=say)
        else:
            result = late_interaction.train_late_interaction(index, split, out_dir, config, teacher=teacher,
                                                             dim=dim or late_interaction.DEFAULT_DIM, report=say)
        before, after = result.dev[0][1], dict(result.dev)[result.kept_epoch]
        out.print(f"trained {out_dir} ({kind}, {result.examples:,} examples, {result.steps:,} steps, "
                  f"{result.seconds:.0f} s on {result.device}); dev nDCG@10 {before:.4f} -> {after:.4f} "
                  f"(epoch {result.kept_epoch} of {config.epochs})", soft_wrap=True)
        stage = {"cross-encoder": "cross_encoder", "dense": "dense_rerank", "late-interaction": "maxsim"}[kind]
        out.print(f"use it: cascade eval {shlex.quote(str(dataset))} -p "
                  f"{shlex.quote(f'bm25 % 100 >> {stage}(model={out_dir})')}", soft_wrap=True)


@train_app.command("cross-encoder")
def train_cross_encoder(dataset: Path = TrainDatasetArg, training: Path = TrainingOpt, out_dir: Path = ModelOutOpt,
                        base: str = BaseOpt, epochs: int = EpochsOpt, batch_size: int = BatchOpt,
                        lr: float = LrOpt, max_length: int = MaxLengthOpt, negatives: int = NegativesOpt,
                        random_negatives: int = RandomNegativesOpt,
                        miner: str = MinerOpt, dev_fraction: float = DevFractionOpt, dev_queries: int = DevQueriesOpt,
                        max_examples: Optional[int] = MaxExamplesOpt, teacher: Optional[str] = TeacherOpt,
                        seed: int = SeedOpt, threads: Optional[int] = ThreadsOpt, keep: str = KeepOpt) -> None:
    """Train a cross-encoder reranker (for the cross_encoder stage)."""
    run_training("cross-encoder", dataset, training, out_dir, train_settings(locals()), teacher)


@train_app.command("late-interaction")
def train_late_interaction(dataset: Path = TrainDatasetArg, training: Path = TrainingOpt,
                           out_dir: Path = ModelOutOpt, base: str = BaseOpt, epochs: int = EpochsOpt,
                           batch_size: int = BatchOpt, lr: float = LrOpt, max_length: int = MaxLengthOpt,
                           negatives: int = NegativesOpt,
                           random_negatives: int = RandomNegativesOpt, miner: str = MinerOpt,
                           dev_fraction: float = DevFractionOpt, dev_queries: int = DevQueriesOpt,
                           max_examples: Optional[int] = MaxExamplesOpt,
                           teacher: Optional[str] = TeacherOpt, seed: int = SeedOpt,
                           threads: Optional[int] = ThreadsOpt, keep: str = KeepOpt,
                           dim: int = typer.Option(128, "--dim", help="Token vector size after the projection.")
                           ) -> None:
    """Train a ColBERT-style head on a bi-encoder's token vectors (for the maxsim stage)."""
    run_training("late-interaction", dataset, training, out_dir, train_settings(locals()), teacher, dim)


@train_app.command("dense")
def train_dense(dataset: Path = TrainDatasetArg, training: Path = TrainingOpt, out_dir: Path = ModelOutOpt,
                base: str = BaseOpt, epochs: int = EpochsOpt, batch_size: int = BatchOpt, lr: float = LrOpt,
                max_length: int = MaxLengthOpt, negatives: int = NegativesOpt,
                random_negatives: int = RandomNegativesOpt, miner: str = MinerOpt,
                dev_fraction: float = DevFractionOpt, dev_queries: int = DevQueriesOpt,
                max_examples: Optional[int] = MaxExamplesOpt,
                teacher: Optional[str] = TeacherOpt, seed: int = SeedOpt,
                threads: Optional[int] = ThreadsOpt, keep: str = KeepOpt) -> None:
    """Fine-tune a bi-encoder (for the dense, dense_rerank and maxsim stages)."""
    run_training("dense", dataset, training, out_dir, train_settings(locals()), teacher)


def train_settings(options: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig's fields from a train command's options."""
    names = {"lr": "learning_rate"}
    keep = ("base", "epochs", "batch_size", "lr", "max_length", "negatives", "random_negatives", "miner",
            "dev_fraction", "dev_queries", "max_examples", "seed", "threads", "keep")
    return {names.get(k, k): options[k] for k in keep}


@train_app.command("synthetic")
def train_synthetic(
    dataset: Path = typer.Argument(..., help="BEIR-layout dataset dir whose documents the queries are written for."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write (queries.jsonl, qrels/train.tsv, SOURCE.txt)."),
    model: str = LlmModelOpt,
    docs: int = typer.Option(200, "--docs", help="Documents to sample (seeded)."),
    per_doc: int = typer.Option(1, "--per-doc", help="Queries per document (more than 1 samples at temperature)."),
    check: str = typer.Option("bm25", "--check", help="Consistency filter: keep a query only if this pipeline "
                              "finds its document in the top --depth."),
    depth: int = typer.Option(20, "--depth", help="Depth of the consistency filter."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="Prompt template with {document}."),
    seed: int = typer.Option(0, "--seed", help="Seed of the document sample and of sampling."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the persistent LLM call cache."),
) -> None:
    """Write synthetic training queries for a collection's documents (InPars / Promptagator style)."""
    from cascade.train.examples import collection_index
    from cascade.train.synthetic import synthesize

    with user_errors():
        if docs < 1:
            raise CascadeError("--docs must be at least 1")
        with progress(f"reading {dataset.name}") as bar:
            index = collection_index(dataset, progress=bar.update)
        from cascade.llm import open_backend

        backend = open_backend(model, cache=not no_cache)
        with progress(f"writing queries with {model}", docs, "docs") as bar:
            report = synthesize(index, backend, out_dir, n_docs=docs, per_doc=per_doc, pipeline=check, depth=depth,
                                seed=seed, template=prompt, progress=lambda done, total: bar.update(done))
        dropped = ", ".join(f"{reason} {n:,}" for reason, n in sorted(report.dropped.items())) or "none"
        out.print(f"wrote {out_dir}: {report.kept:,} queries kept of {report.generated:,} generated for "
                  f"{report.documents:,} documents in {report.seconds:.0f} s (dropped: {dropped})", soft_wrap=True)
        out.print(f"train on them: cascade train cross-encoder {shlex.quote(str(dataset))} --training "
                  f"{shlex.quote(str(out_dir))} --out MODEL_DIR", soft_wrap=True)


@app.command()
def demo(
    query: list[str] = typer.Option([], "--query", "-q", help="Query to run (repeatable); a few defaults otherwise."),
    k: int = typer.Option(5, "-k", help="Hits per query."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to put the demo index."),
) -> None:
    """Index the docstrings of Python's standard library, then search them."""
    import tempfile

    from cascade.data.pydocs import python_docstrings
    from cascade.index.index import Index
    from cascade.retrieve.bm25 import BM25

    with user_errors():
        path = output or Path(tempfile.mkdtemp(prefix="cascade-demo-")) / "stdlib.idx"
        start = time.perf_counter()
        with progress("indexing Python's standard library docstrings", unit="docs") as bar:
            idx = Index.build(python_docstrings(), path, overwrite=True, progress=bar.update)
        seconds = time.perf_counter() - start
        out.print(f"indexed {plural(idx.n_docs, 'docstring')} into {path} in {seconds:.2f} s")
        bm25 = BM25(idx)
        queries = query or ["parse a json string", "temporary directory cleanup", "compare two sequences of lines",
                            "thread safe queue"]
        for q in queries:
            start = time.perf_counter()
            hits = bm25.search(q, k=k)
            print_hits(q, hits, time.perf_counter() - start)
        kept = "" if output else " (a temporary directory: pass -o DIR to keep the index somewhere else)"
        out.print(f"search it again{kept}:")
        out.print(f"  cascade search {shlex.quote(str(path))} {shlex.quote(queries[0])}", soft_wrap=True)


@app.command()
def serve(
    index_dir: Optional[Path] = typer.Argument(None, help="Index directory (with --demo: where to build the demo "
                                                          "index if it is not there; default a temporary one)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8080, help="Port."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File holding the API key that "
                                                "writes need; without one, writes are refused."),
    protect_reads: bool = typer.Option(False, "--protect-reads", help="Reads need the API key too."),
    workers: int = typer.Option(1, "--workers", help="Server processes."),
    concurrency: int = typer.Option(4, "--concurrency", help="Searches running at once per process."),
    queue: int = typer.Option(64, "--queue", help="Searches waiting beyond that get 429."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds before a request is answered 503."),
    pipelines: list[str] = typer.Option([], "--pipeline", "-p", help="Pipelines the page offers (repeatable)."),
    cors: list[str] = typer.Option([], "--cors-origin", help="Allow browser calls from this origin (repeatable)."),
    allow_models: list[str] = typer.Option([], "--allow-model", help="A model= value clients may name beyond the "
                                           "built-in aliases: a directory, hub id or LLM spec (repeatable)."),
    demo: bool = typer.Option(False, "--demo", help="Serve the standard library's docstrings (built if needed)."),
    open_page: bool = typer.Option(False, "--open", help="Open the page in a browser."),
) -> None:
    """Serve an index over HTTP: /v1 API, a search page at /, /metrics."""
    from dataclasses import replace

    from cascade.server.config import Limits, ServerConfig, read_api_key
    from cascade.server.serve import require_server_extra
    from cascade.server.serve import serve as run_server

    with user_errors():
        require_server_extra()
        path = demo_index(index_dir) if demo else index_dir
        if path is None:
            raise CascadeError("give an index directory, or --demo")
        from cascade.index.index import Index

        Index.open(path).close()  # a bad path is one line now, not a traceback from a worker
        config = ServerConfig(path, api_key=read_api_key(api_key_file) if api_key_file else None,
                              protect_reads=protect_reads, cors_origins=tuple(cors), models=tuple(allow_models),
                              limits=replace(Limits(), concurrency=concurrency, queue=queue, timeout_s=timeout))
        if pipelines:
            config.pipelines = tuple(pipelines)
        if protect_reads and config.api_key is None:
            raise CascadeError("--protect-reads needs --api-key-file")
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        err.print(f"serving {path} at {url} (API at {url}docs; Ctrl-C stops)")
        if open_page:
            import threading
            import webbrowser

            threading.Timer(1.0, webbrowser.open, [url]).start()
        run_server(config, host=host, port=port, workers=workers)


def demo_index(path: Optional[Path]) -> Path:
    """The demo index at ``path`` (built when absent), or in a temporary directory."""
    import tempfile

    from cascade.data.pydocs import python_docstrings
    from cascade.index.index import Index

    target = path or Path(tempfile.mkdtemp(prefix="cascade-demo-")) / "stdlib.idx"
    if not (target / "MANIFEST.json").exists():
        with progress("indexing Python's standard library docstrings", unit="docs") as bar:
            Index.build(python_docstrings(), target, overwrite=True, progress=bar.update)
    return target


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
