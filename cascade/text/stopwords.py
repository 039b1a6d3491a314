"""Stopword lists by language name."""

from __future__ import annotations

from cascade.core.errors import CascadeError

# Lucene's EnglishAnalyzer stop set, as Anserini and bm25s use it: the default, so BM25
# figures are comparable with theirs.
LUCENE_ENGLISH = frozenset(
    """
    a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with
    """.split()
)

# The Snowball project's English stopword list (snowballstem.org), plus the tails that
# tokenization leaves of contractions. Larger; measured in bench/bm25_quality.py.
SNOWBALL_ENGLISH = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what
    which who whom this that these those am is are was were be been being have has had
    having do does did doing would should could ought a an the and but if or because as
    until while of at by for with about against between into through during before after
    above below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now d ll m o re ve y ain
    aren couldn didn doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn
    weren won wouldn
    """.split()
)

STOPWORDS: dict[str, frozenset[str]] = {
    "english": LUCENE_ENGLISH,
    "en": LUCENE_ENGLISH,
    "lucene": LUCENE_ENGLISH,
    "snowball": SNOWBALL_ENGLISH,
}


def stopword_set(name: str | None) -> frozenset[str]:
    """The stopword set called ``name``; ``None`` or ``"none"`` gives an empty set."""
    if name is None or name == "none":
        return frozenset()
    try:
        return STOPWORDS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(STOPWORDS))
        raise CascadeError(f"unknown stopword list {name!r}; known: {known}, none") from None
