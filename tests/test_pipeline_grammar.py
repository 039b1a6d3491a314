"""The pipeline grammar: printing and parsing round trip, precedence, and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cascade
from cascade.core.candidates import Candidates, IdTable
from cascade.core.errors import CascadeError
from cascade.core.nodes import SUM, Cutoff, Fuse, Pipeline, Then, Union, Weighted
from cascade.core.registry import register_stage, stage_names
from cascade.fuse import combmnz, combsum, linear, rrf
from cascade.fuse.normalize import NORMS
from cascade.pipeline.function import FunctionStage, stage
from cascade.pipeline.parse import PipelineSyntaxError, parse
from cascade.retrieve.bm25 import BM25
from cascade.retrieve.rm3 import RM3
from cascade.retrieve.run import RunStage

FUSIONS = {m.METHOD.name: m.METHOD for m in (rrf, combsum, combmnz, linear)}

_SPACE = IdTable(["d0", "d1", "d2"])


def _empty(queries, candidates, **params):  # noqa: ANN001, ANN003, ANN202
    return Candidates.from_lists([q.id for q in queries], [np.empty(0, np.int32)] * len(queries),
                                 [np.empty(0, np.float32)] * len(queries), _SPACE)


# registered through the decorator and through register_stage directly
ga = stage(_empty, name="ga")
gb = stage(_empty, name="gb")
gparam = stage(_empty, name="gparam")
gdirect = FunctionStage(_empty, name="gdirect")
register_stage("gdirect", lambda ctx, *args, **params: gdirect.with_params(**params), replace=True)
LEAVES = {"ga": ga, "gb": gb, "gparam": gparam, "gdirect": gdirect}

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- strategies ---------------------------------------------------------------------------

floats = st.one_of(st.sampled_from([0.5, 2.0, -1.0, 1e20, -2.5e-7, 1e300]),
                   st.floats(allow_nan=False, allow_infinity=False))
texts = st.one_of(
    st.sampled_from(["x y", ".5", "1.5", "-3", "true", "false", "none", "", 'say "hi"', "back\\slash",
                     "a,b", "a=b", "(x)", "runs/a.trec", "~/x", "line\nbreak", "é"]),
    st.text(max_size=12),
)
values = st.one_of(floats, texts, st.booleans(), st.integers(-10**6, 10**6))
param_dicts = st.dictionaries(st.sampled_from(["alpha", "name", "flag", "n", "k"]), values, max_size=3)
fixed_params = st.sampled_from([{}, {"alpha": 0.5}, {"name": "x y"}, {"flag": True},
                                {"alpha": 0.5, "name": "x y", "flag": True}])
leaves = st.builds(lambda name, params: LEAVES[name].with_params(**params),
                   st.sampled_from(sorted(LEAVES)), st.one_of(fixed_params, param_dicts))
weights = st.one_of(st.sampled_from([0.5, 2.0, -1.0, 3.0, 1e20]), st.floats(-100, 100, allow_nan=False))


def _extend(children: st.SearchStrategy[Pipeline]) -> st.SearchStrategy[Pipeline]:
    two = st.tuples(children, children)
    some = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        two.map(lambda ab: ab[0] >> ab[1]),
        st.tuples(children, st.integers(1, 5000)).map(lambda ak: ak[0] % ak[1]),
        two.map(lambda ab: ab[0] | ab[1]),
        two.map(lambda ab: ab[0] + ab[1]),
        st.tuples(weights, children).map(lambda wa: wa[0] * wa[1]),
        st.tuples(children, weights).map(lambda aw: aw[0] * aw[1]),
        st.tuples(some, st.one_of(st.just({}), st.builds(dict, k=st.integers(1, 100)))).map(
            lambda x: Fuse(FUSIONS["rrf"], x[0], x[1])),
        st.tuples(st.sampled_from(["combsum", "combmnz", "linear"]), some,
                  st.one_of(st.just({}), st.builds(dict, norm=st.sampled_from(NORMS)))).map(
            lambda x: Fuse(FUSIONS[x[0]], x[1], x[2])),
    )


pipelines = st.recursive(leaves, _extend, max_leaves=8)


def roundtrip(p: Pipeline, **kw: object) -> None:
    text = str(p)
    back = parse(text, **kw)
    assert back == p, f"{text!r} parsed to {str(back)!r}"
    assert back.key() == p.key()
    assert str(back) == text


# -- round trip ---------------------------------------------------------------------------


@SETTINGS
@given(pipelines)
def test_roundtrip_random_trees(p: Pipeline) -> None:
    roundtrip(p)


@pytest.mark.parametrize("value", [0.5, -1.0, 2.0, 1e20, -1e-20, 7, -3, True, False, "x y", ".5", "1e5", "-2",
                                   "true", "", 'q"uote', "back\\slash", "runs/a.trec"])
def test_param_values_keep_their_type(value: object) -> None:
    p = gparam.with_params(v=value)
    back = parse(str(p))
    assert type(back.params["v"]) is type(value) and back.params["v"] == value, str(p)
    roundtrip(p)


def test_weight_with_exponent_roundtrips() -> None:
    for w in (1e20, -1e20, 1e-20, 1.5e300):
        roundtrip(w * ga)
        roundtrip(ga + w * gb)


def test_quoted_string_param() -> None:
    p = gparam.with_params(alpha=0.5, name="x y", flag=True)
    assert str(p) == 'gparam(alpha=0.5, flag=true, name="x y")'
    assert parse('gparam(name="x y", flag=true, alpha=0.5)') == p
    assert parse("gparam(name='x y', flag=true, alpha=0.5)") == p


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[cascade.Index, Path]:
    root = tmp_path_factory.mktemp("grammar")
    docs = [cascade.Doc(f"d{i}", t) for i, t in enumerate(
        ["apple pie recipe", "apple orchard harvest", "pie crust butter", "car engine oil", "apple car"])]
    index = cascade.Index.build(docs, root / "tiny.idx")
    (root / "a.trec").write_text("q1 Q0 d1 1 2.5 x\nq1 Q0 d2 2 1.5 x\n")
    (root / "my runs").mkdir()
    (root / "my runs" / "b c.trec").write_text("q1 Q0 d3 1 9.0 x\n")
    return index, root


def test_builtin_stages_roundtrip(tiny: tuple[cascade.Index, Path]) -> None:
    index, root = tiny
    cases = [
        ("bm25(k1=1.2, b=0.75, k=50)", "bm25(b=0.75, k=50, k1=1.2)"),
        ("bm25", "bm25"),
        ("bm25_rm3", "bm25 >> rm3"),
        ("bm25 >> rm3(fb_docs=5)", "bm25 >> rm3(fb_docs=5)"),
        ("bm25_rm3(k1=1.2, fb_docs=5)", "bm25(k1=1.2) >> rm3(fb_docs=5, k1=1.2)"),
        ("run(a.trec)", "run(a.trec)"),
        ('run("my runs/b c.trec", k=10)', 'run("my runs/b c.trec", k=10)'),
        (f'run("{root}/my runs/b c.trec")', f'run("{root}/my runs/b c.trec")'),
        ("rrf(bm25 % 100, run(a.trec), k=20) >> 2 * bm25(k1=1.2)",
         "rrf(bm25 % 100, run(a.trec), k=20) >> 2.0 * bm25(k1=1.2)"),
        ('linear(0.3 * bm25, -1.0 * run("my runs/b c.trec"), norm=zscore) | bm25_rm3 % 10',
         'linear(0.3 * bm25, -1.0 * run("my runs/b c.trec"), norm=zscore) | (bm25 >> rm3) % 10'),
    ]
    for text, printed in cases:
        p = parse(text, index=index, root=root)
        assert str(p) == printed
        roundtrip(p, index=index, root=root)
    p = parse("bm25(k1=1.2, b=0.75, k=50)", index=index)
    assert isinstance(p, BM25) and (p.k1, p.b, p.k) == (1.2, 0.75, 50)
    rm3 = parse("rm3(fb_docs=5)", index=index)
    assert isinstance(rm3, RM3) and rm3.settings["fb_docs"] == 5 and str(rm3) == "rm3(fb_docs=5)"
    run = parse('run("my runs/b c.trec")', root=root)
    assert isinstance(run, RunStage) and run.path == root / "my runs" / "b c.trec"
    # an unquoted path with a space is two tokens: an error, not a different file
    with pytest.raises(PipelineSyntaxError):
        parse("run(my runs/b c.trec)", root=root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_builtin_mixed_roundtrip(tiny: tuple[cascade.Index, Path], data: st.DataObject) -> None:
    index, root = tiny
    builtin = st.sampled_from([
        BM25(index, k1=1.2, b=0.75, k=50), BM25(index), RM3(index, fb_docs=5),
        BM25(index, k1=1.2) >> RM3(index, k1=1.2),
        RunStage(root / "a.trec", label="a.trec"), RunStage(root / "my runs" / "b c.trec", label="my runs/b c.trec"),
    ])
    p = data.draw(st.recursive(st.one_of(builtin, leaves), _extend, max_leaves=6))
    roundtrip(p, index=index, root=root)


# -- precedence ---------------------------------------------------------------------------


def test_precedence_by_hand() -> None:
    a, b, c = ga, gb, gdirect
    t = parse("ga | gb >> gdirect")
    assert isinstance(t, Union) and t == Union([a, Then([b, c])]) and t == a | (b >> c)
    t = parse("ga >> gb | gdirect")
    assert isinstance(t, Union) and t == Union([Then([a, b]), c]) and t == (a >> b) | c
    t = parse("2 * ga % 10")
    assert isinstance(t, Cutoff) and t.k == 10 and t.inner == Weighted(2.0, a)
    assert t == Cutoff(Weighted(2, a), 10) == 2 * a % 10
    t = parse("ga + gb >> gdirect")
    assert isinstance(t, Then) and t.steps[0] == Fuse(SUM, [a, b]) and t == (a + b) >> c
    t = parse("ga >> gb + gdirect")
    assert t == Then([a, Fuse(SUM, [b, c])]) == a >> b + c
    assert parse("ga % 10 >> gb % 5") == Then([Cutoff(a, 10), Cutoff(b, 5)]) == a % 10 >> b % 5
    assert parse("(ga | gb) >> gdirect") == Then([Union([a, b]), c]) == (a | b) >> c
    assert parse("ga * 2") == Weighted(2.0, a) == a * 2
    assert parse("ga + -1 * gb") == Fuse(SUM, [a, Weighted(-1.0, b)]) == a + -1 * b
    assert parse("2 * (ga % 10)") == Weighted(2.0, Cutoff(a, 10)) == 2 * (a % 10)
    assert parse("(ga >> gb) % 10") == Cutoff(Then([a, b]), 10) == (a >> b) % 10
    # associativity: chains flatten, so grouping does not change the tree
    assert parse("ga >> (gb >> gdirect)") == parse("(ga >> gb) >> gdirect") == Then([a, b, c])
    assert parse("ga | (gb | gdirect)") == Union([a, b, c])
    assert parse("ga + (gb + gdirect)") == Fuse(SUM, [a, b, c])
    assert parse("ga % 5 % 10") == Cutoff(Cutoff(a, 5), 10)
    # printing puts back exactly the parentheses that are needed
    assert str(a | (b >> c)) == "ga | gb >> gdirect"
    assert str((a | b) >> c) == "(ga | gb) >> gdirect"
    assert str((a + b) % 10) == "(ga + gb) % 10"
    assert str(2 * (a + b)) == "2.0 * (ga + gb)"
    assert str(Fuse(FUSIONS["rrf"], [a | b, c], {"k": 10})) == "rrf(ga | gb, gdirect, k=10)"


def test_fusion_params_normalised() -> None:
    assert parse("combsum(ga, gb, norm=minmax)") == parse("combsum(ga, gb)")  # the default is dropped
    assert str(parse("combsum(ga, gb, norm=minmax)")) == "combsum(ga, gb)"
    assert str(parse("rrf(ga, gb, k=60)")) == "rrf(ga, gb)"
    assert parse("combsum(ga, gb, norm=zscore)") != parse("combsum(ga, gb)")
    assert parse("combmnz(ga, gb)") != parse("combsum(ga, gb)")
    assert parse("rrf(ga, gb)") != parse("rrf(gb, ga)")  # input order is part of the key


# -- errors -------------------------------------------------------------------------------


def syntax_error(text: str, **kw: object) -> PipelineSyntaxError:
    with pytest.raises(CascadeError) as info:
        parse(text, **kw)
    assert isinstance(info.value, PipelineSyntaxError), type(info.value)
    err = info.value
    lines = str(err).split("\n")
    assert lines[1] == "  " + text
    assert lines[2] == "  " + " " * err.pos + "^"
    return err


@pytest.mark.parametrize("text,pos", [
    ("ga % x", 5),               # bad cutoff: at 'x'
    ("ga % 0", 5),
    ("ga % -3", 5),
    ("ga % 2.5", 5),
    ("ga >>", 5),                # dangling '>>': at the end
    (">> ga", 0),
    ("ga >> >> gb", 6),
    ("rrf(ga,, gb)", 7),         # at the second ','
    ("(ga >> gb", 9),            # unclosed '(': at the end
    ("rrf(ga, gb", 10),
    ("ga >> ?gb", 6),            # unexpected character
    ("ga ) gb", 3),
    ("ga * gb", 5),              # a weight needs a number
    ("gparam(alpha=1, alpha=2)", 16),  # repeated parameter: at its second name
    ("gparam(alpha=1, 3)", 16),
    ("rrf(ga, q=1)", 0),         # unknown fusion parameter: at the fusion's name
    ("ga >> rrf(ga, q=1)", 6),
    ("combsum(ga, gb, norm=bogus)", 0),   # bad norm value
    ("ga | linear(ga, norm=l2)", 5),
    ("", 0),
])
def test_error_positions(text: str, pos: int) -> None:
    err = syntax_error(text)
    assert err.pos == pos, str(err)


def test_error_messages() -> None:
    err = syntax_error("ga >> bm52(k=10)")
    msg = str(err)
    assert err.pos == 6
    assert "unknown stage 'bm52'" in msg and "did you mean 'bm25'?" in msg
    for name in stage_names():
        assert name in msg
    assert {"bm25", "rm3", "bm25_rm3", "run", "rrf", "combsum", "combmnz", "linear", "ga"} <= set(stage_names())
    assert "did you mean 'combsum'" in str(syntax_error("combsun(ga)"))
    assert "q" in str(syntax_error("rrf(ga, q=1)")) and "known: k" in str(syntax_error("rrf(ga, q=1)"))
    assert "norm must be one of none, minmax, zscore, rank" in str(syntax_error("combsum(ga, gb, norm=bogus)"))
    assert "given twice" in str(syntax_error("gparam(alpha=1, alpha=2)"))
    assert "unexpected character '?'" in str(syntax_error("ga >> ?gb"))
    assert "positive integer" in str(syntax_error("ga % x"))
    assert "needs an index" in str(syntax_error("ga >> bm25"))  # no index given
    assert syntax_error("ga >> bm25").pos == 6
    with pytest.raises(CascadeError, match="no such run file"):  # a DataError naming the file
        parse("run(nowhere.trec)")


def test_errors_raise_before_building(tmp_path: Path) -> None:
    """A syntax error after an expensive stage is reported without building that stage first."""
    built = []
    register_stage("gcounted", lambda ctx, *a, **p: built.append(1) or ga, replace=True)
    syntax_error("gcounted >> (")
    syntax_error("gcounted >> rrf(ga, q=1)")
    assert built == []


def test_python_operator_errors() -> None:
    for bad in (lambda: ga % 0, lambda: ga % 2.5, lambda: ga % True, lambda: ga >> 3, lambda: ga | "x",
                lambda: ga + None, lambda: ga * "2", lambda: parse(42), lambda: Fuse(FUSIONS["rrf"], [ga], {"q": 1}), lambda: Fuse(FUSIONS["rrf"], [])):
        with pytest.raises(CascadeError):
            bad()


def test_deep_nesting_and_huge_numbers_are_cascade_errors() -> None:
    text = "(" * 2000 + "ga" + ")" * 2000
    with pytest.raises(CascadeError):
        parse(text)
    assert parse("(((ga)))") == ga
    with pytest.raises(CascadeError):
        parse("ga % " + "9" * 5000)
    p = parse("gparam(n=" + "9" * 5000 + ")")  # too long for an int: a number all the same
    assert isinstance(p, FunctionStage)


def test_run_on_a_directory_is_a_cascade_error(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for text in ("run(sub)", f'run("{tmp_path}")'):
        with pytest.raises(CascadeError, match="no such run file"):
            parse(text, root=tmp_path)


_FRAGMENTS = ["ga", "gb", "gparam", "bm25", "bm25_rm3", "rm3", "run", "rrf", "combsum", "combmnz", "linear",
              "k", "k1", "norm", "alpha", "zscore", "true", "a.trec", "sub", ".", "nowhere", "x",
              ">>", ">", "%", "|", "+", "*", "(", ")", ",", "=", " ", '"', "'", "\\", "?", "-", "1", "0", "2.5",
              "-1", "1e+5", "1e999", "é", "\n", "/", "~", ";", "[", "{", "$", "\t"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.lists(st.sampled_from(_FRAGMENTS), max_size=14).map("".join),
                      st.lists(st.sampled_from(_FRAGMENTS), max_size=14).map(" ".join),
                      st.text(max_size=30)))
def test_random_strings_parse_or_raise_cascade_error(tiny: tuple[cascade.Index, Path], text: str) -> None:
    index, root = tiny
    (root / "sub").mkdir(exist_ok=True)
    try:
        p = parse(text, index=index, root=root)
    except PipelineSyntaxError as err:
        assert 0 <= err.pos <= len(text)
        return
    except CascadeError:
        return
    assert isinstance(p, Pipeline)
    str(p), p.key(), p.compile()  # whatever parses also prints, keys and compiles


def test_thousands_of_chained_cutoffs_work() -> None:
    """A cutoff of a cutoff is one cutoff (the same output), so a chain of 5,000 does not nest."""
    text = "ga" + " % 10" * 5000
    p = parse(text)
    assert p == Cutoff(ga, 10) and str(p) == "ga % 10" and p.key() == (ga % 10).key()
    assert parse("ga % 5 % 10") == ga % 5 and parse("ga % 10 % 5") == ga % 5
    chained = ga
    for k in range(5000, 0, -1):
        chained = chained % k
    assert chained == ga % 1
    assert chained.search("q").to_run() == {"0": {}}  # runs (ga returns nothing)
    long = parse(" >> ".join(["ga"] * 3000) + " | " + " | ".join(["gb"] * 3000))
    assert isinstance(long, Union) and len(long.inputs) == 3001  # chains of one operator are flat
    str(long), long.key(), long.compile()


def test_nesting_too_deep_is_a_clear_error() -> None:
    text = "ga" + " * 2" * 5000  # weights do not merge (rounding): each one nests
    with pytest.raises(PipelineSyntaxError, match="nested more than 100 operators deep") as err:
        parse(text)
    assert text[err.value.pos] == "*"
    p = ga
    with pytest.raises(CascadeError, match="nested more than 100 operators deep"):
        for i in range(500):
            p = (p % 10) * 2 if i % 2 else (p | gb) >> gdirect
    with pytest.raises(PipelineSyntaxError, match="nested more than 64 levels deep") as err:
        parse("rrf(" * 200 + "ga" + ")" * 200)
    assert err.value.pos > 0  # points into the text, not at its start
    with pytest.raises(PipelineSyntaxError, match="nested more than 64 levels deep"):
        parse("(" * 100 + "ga" + ")" * 100)
    deep = ga
    for _ in range(45):  # 90 levels, within the limit: runs, prints, parses back
        deep = 2 * (deep | gb)
    assert parse(str(deep)) == deep
    deep.search("q")
