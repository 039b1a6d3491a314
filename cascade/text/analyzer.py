"""Turning text into index terms: tokenize, lowercase, drop stopwords, stem.

The settings are stored in the index manifest, so queries are analysed exactly as the
documents were.

>>> from cascade.text import Analyzer
>>> Analyzer().terms("The runners were running quickly")
['runner', 'were', 'run', 'quick']
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Sequence

from cascade.core.errors import CascadeError
from cascade.text.stopwords import stopword_set

# Words of two or more word characters (the scikit-learn / bm25s default).
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"

# The token that ``ascii_words_batch`` puts between two texts: a control character, which the
# default pattern never makes part of a word.
QUERY_BREAK = b"\x01"
_BREAK_CHAR = QUERY_BREAK.decode()
_BREAK_JOINER = f" {_BREAK_CHAR} "


@dataclass(frozen=True)
class Analyzer:
    """Text analysis settings and the function that applies them.

    Args:
        lowercase: fold case before anything else.
        stopwords: name of a stopword list ("english") or None to keep every word.
        stemmer: a Snowball language known to PyStemmer ("english", "porter", ...) or None.
        token_pattern: regular expression whose matches are the tokens.
    """

    lowercase: bool = True
    stopwords: str | None = "english"
    stemmer: str | None = "english"
    token_pattern: str = DEFAULT_TOKEN_PATTERN
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            re.compile(self.token_pattern)
        except re.error as err:
            raise CascadeError(f"bad token_pattern {self.token_pattern!r}: {err}") from None
        stopword_set(self.stopwords)  # validates the name
        self._stem_words  # validates the stemmer name

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        # The default pattern without its \b anchors finds the same tokens (a greedy \w\w+ always
        # runs to a word's end, and a scan never resumes inside a word), about 25% faster.
        return re.compile(r"\w\w+" if self.token_pattern == DEFAULT_TOKEN_PATTERN else self.token_pattern)

    @cached_property
    def _stopset(self) -> frozenset[str]:
        return stopword_set(self.stopwords)

    @cached_property
    def _stem_words(self):  # type: ignore[no-untyped-def]
        if self.stemmer is None:
            return None
        import Stemmer

        try:
            return Stemmer.Stemmer(self.stemmer).stemWords
        except KeyError:
            langs = ", ".join(Stemmer.algorithms())
            raise CascadeError(f"unknown stemmer {self.stemmer!r}; PyStemmer knows: {langs}") from None

    def tokens(self, text: str) -> list[str]:
        """Tokens after lowercasing and stopword removal, before stemming."""
        stop = self._stopset
        return [t for t in self.raw_tokens(text) if t not in stop]

    def raw_tokens(self, text: str) -> list[str]:
        """Tokens after lowercasing, stopwords still in: with :meth:`term_of`, the two halves of
        :meth:`terms`, for callers that memoise per token."""
        return self._regex.findall(text.lower() if self.lowercase else text)

    def ascii_words(self, text: str) -> list[bytes] | None:
        """For ASCII text under the default token pattern: the maximal runs of word characters as
        bytes, lowercased if set, one-character runs included (the pattern would drop them).
        Their runs of two or more are exactly :meth:`raw_tokens`, found about 4x faster by one
        bytes.translate and split. None when the text or the pattern rules this out."""
        if self.token_pattern != DEFAULT_TOKEN_PATTERN or not text.isascii():
            return None
        return text.encode().translate(self._ascii_table).split()

    def ascii_words_batch(self, texts: Sequence[str]) -> tuple[list[bytes], list[int]] | None:
        """:meth:`ascii_words` of every ASCII text, with a :data:`QUERY_BREAK` token between two
        texts, from one translate and split of the whole batch; and the positions of the texts
        that are not ASCII, which are left empty here. None when the pattern is not the default
        or a text holds the break character itself."""
        if self.token_pattern != DEFAULT_TOKEN_PATTERN:
            return None
        others = [i for i, text in enumerate(texts) if not text.isascii()]
        if others:
            texts = list(texts)
            for i in others:
                texts[i] = ""
        joined = _BREAK_JOINER.join(texts)
        if joined.count(_BREAK_CHAR) != max(len(texts) - 1, 0):
            return None
        return joined.encode().translate(self._ascii_break_table).split(), others

    @cached_property
    def _ascii_break_table(self) -> bytes:
        table = bytearray(self._ascii_table)
        table[QUERY_BREAK[0]] = QUERY_BREAK[0]
        return bytes(table)

    @cached_property
    def _ascii_table(self) -> bytes:
        def mapped(c: int) -> int:
            ch = chr(c)
            if not (ch.isascii() and (ch.isalnum() or ch == "_")):
                return 32  # a separator
            return ord(ch.lower()) if self.lowercase else c

        return bytes(mapped(c) for c in range(256))

    def term_of(self, token: str) -> str | None:
        """The index term of one raw token, or None for a stopword."""
        if token in self._stopset:
            return None
        stem = self._stem_words
        return token if stem is None else stem([token])[0]

    def terms(self, text: str) -> list[str]:
        """Index terms of ``text``, in order, with repeats."""
        tokens = self.tokens(text)
        stem = self._stem_words
        if stem is None:
            return tokens
        cache = self._cache
        try:
            return [cache[t] for t in tokens]  # the common case once the vocabulary is warm
        except KeyError:
            if len(cache) > 1_000_000:
                cache.clear()
            missing = [t for t in set(tokens) if t not in cache]
            cache.update(zip(missing, stem(missing)))
            return [cache[t] for t in tokens]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_cache", None)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Analyzer":
        known = {"lowercase", "stopwords", "stemmer", "token_pattern"}
        unknown = set(data) - known
        if unknown:
            raise CascadeError(f"unknown analyzer settings: {', '.join(sorted(unknown))}")
        return cls(**data)
