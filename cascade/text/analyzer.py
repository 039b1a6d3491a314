"""Turning text into index terms: fold accents, lowercase, tokenize, drop stopwords, stem.

The settings are stored in the index manifest, so queries are analysed exactly as the
documents were. An index whose manifest predates a setting is opened with the behaviour it
was built with (:meth:`Analyzer.from_dict`): no accent folding, no CJK bigrams, no symbol
suffixes.

>>> from cascade.text import Analyzer
>>> Analyzer().terms("The runners were running quickly")
['runner', 'were', 'run', 'quick']
>>> Analyzer(stemmer=None).terms("Café Zürich")
['cafe', 'zurich']
>>> Analyzer(cjk="bigrams", symbol_suffixes=True).terms("東京都の C++ と C# ガイド")
['東京', '京都', '都の', 'c++', 'と', 'c#', 'ガイ', 'イド']
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Sequence

from cascade.core.errors import CascadeError
from cascade.text.cjk import CJK_RUN, bigrams
from cascade.text.folding import fold_accents
from cascade.text.stopwords import stopword_set

# Words of two or more word characters (the scikit-learn / bm25s default).
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"

# The token that ``ascii_words_batch`` puts between two texts: a control character, which the
# default pattern never makes part of a word.
QUERY_BREAK = b"\x01"
_BREAK_CHAR = QUERY_BREAK.decode()
_BREAK_JOINER = f" {_BREAK_CHAR} "

# With ``symbol_suffixes``: a word of letters and the run of "+" or "#" right after it, when no
# word character follows ("c++", "c#", "f#", "notepad++"; not "a+b", "issue#12", nor "c++11",
# which stays "11" as before). Tried before the token pattern at each position. A leading dot
# gets no rule: ".NET" is the word "net" on both sides, as it always was.
SYMBOL_WORD = r"\b[^\W\d_]+[+#]+(?![\w+#])"
_LEADING_FLAGS = re.compile(r"^\(\?[aiLmsux]+\)")

CJK_MODES = ("bigrams",)

# What a manifest's analyzer dict without the key means: the behaviour before the setting.
_BEFORE = {"fold_accents": False, "cjk": None, "symbol_suffixes": False}


@dataclass(frozen=True)
class Analyzer:
    """Text analysis settings and the function that applies them.

    Args:
        lowercase: fold case (after accent folding, before tokenizing).
        stopwords: name of a stopword list ("english") or None to keep every word.
        stemmer: a Snowball language known to PyStemmer ("english", "porter", ...) or None.
        token_pattern: regular expression whose matches are the tokens.
        fold_accents: remove accents and spell non-decomposing Latin letters in ASCII first
            ("Café Zürich" -> "Cafe Zurich", "ß" -> "ss", "ø" -> "o"; :mod:`cascade.text.folding`).
        cjk: "bigrams": runs of Han, Hiragana, Katakana and Hangul characters become overlapping
            character bigrams (a lone character a unigram), other text is tokenised by the pattern
            (:mod:`cascade.text.cjk`); None (or "none"): CJK characters are word characters
            like any other.
        symbol_suffixes: keep a run of "+" or "#" right after a word of letters, when no word
            character follows: "C++", "C#", "F#", "Notepad++" are the terms "c++", "c#", "f#",
            "notepad++" (without it they are "c" and "notepad"; "c" is too short to be a term).
    """

    lowercase: bool = True
    stopwords: str | None = "english"
    stemmer: str | None = "english"
    token_pattern: str = DEFAULT_TOKEN_PATTERN
    fold_accents: bool = True
    cjk: str | None = None
    symbol_suffixes: bool = False
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            re.compile(self.token_pattern)
        except re.error as err:
            raise CascadeError(f"bad token_pattern {self.token_pattern!r}: {err}") from None
        for name in ("lowercase", "fold_accents", "symbol_suffixes"):
            if not isinstance(getattr(self, name), bool):
                raise CascadeError(f"analyzer setting {name} must be true or false (got {getattr(self, name)!r})")
        if self.cjk == "none":
            object.__setattr__(self, "cjk", None)
        if self.cjk is not None and self.cjk not in CJK_MODES:
            raise CascadeError(f"unknown cjk mode {self.cjk!r}; known: {', '.join(CJK_MODES)}, none")
        stopword_set(self.stopwords)  # validates the name
        self._stem_words  # validates the stemmer name
        self._regex  # noqa: B018 (validates the pattern with the symbol suffixes)

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        # The default pattern without its \b anchors finds the same tokens (a greedy \w\w+ always
        # runs to a word's end, and a scan never resumes inside a word), about 25% faster.
        pattern = r"\w\w+" if self.token_pattern == DEFAULT_TOKEN_PATTERN else self.token_pattern
        if self.symbol_suffixes:  # the symbol word first; global flags stay at the front
            flags = _LEADING_FLAGS.match(pattern)
            head = flags.group() if flags else ""
            pattern = f"{head}{SYMBOL_WORD}|(?:{pattern[len(head):]})"
        try:
            return re.compile(pattern)
        except re.error as err:
            raise CascadeError(f"bad token_pattern {self.token_pattern!r}: {err}") from None

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
        """Tokens after accent folding and lowercasing, stopwords still in: with :meth:`term_of`,
        the two halves of :meth:`terms`, for callers that memoise per token."""
        if text.isascii():  # nothing to fold, no CJK
            return self._regex.findall(text.lower() if self.lowercase else text)
        if self.fold_accents:
            text = fold_accents(text)
        if self.lowercase:
            text = text.lower()
        if self.cjk is not None:
            parts = CJK_RUN.split(text)
            if len(parts) > 1:  # text, CJK run, text, ..., text
                findall, tokens = self._regex.findall, []
                for i, part in enumerate(parts):
                    tokens.extend(bigrams(part) if i % 2 else findall(part))
                return tokens
        return self._regex.findall(text)

    def ascii_words(self, text: str) -> list[bytes] | None:
        """For ASCII text under the default token pattern: the maximal runs of word characters as
        bytes, lowercased if set, one-character runs included (the pattern would drop them).
        Their runs of two or more are exactly :meth:`raw_tokens`, found about 4x faster by one
        bytes.translate and split. None when the text or the pattern rules this out (with
        ``symbol_suffixes``, a text holding "+" or "#"). Accent folding and CJK bigrams leave
        ASCII text as it is."""
        if self.token_pattern != DEFAULT_TOKEN_PATTERN or not text.isascii() or \
                (self.symbol_suffixes and ("+" in text or "#" in text)):
            return None
        return text.encode().translate(self._ascii_table).split()

    def ascii_words_batch(self, texts: Sequence[str]) -> tuple[list[bytes], list[int]] | None:
        """:meth:`ascii_words` of every text it takes, with a :data:`QUERY_BREAK` token between
        two texts, from one translate and split of the whole batch; and the positions of the texts
        it does not take (not ASCII, or holding "+" or "#" with ``symbol_suffixes``), which are
        left empty here, for :meth:`raw_tokens`. None when the pattern is not the default or a
        text holds the break character itself."""
        if self.token_pattern != DEFAULT_TOKEN_PATTERN:
            return None
        if self.symbol_suffixes:  # a text that may hold a symbol word takes the regex
            others = [i for i, text in enumerate(texts) if not text.isascii() or "+" in text or "#" in text]
        else:
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
        """Every setting (what an index manifest records)."""
        d = asdict(self)
        d.pop("_cache", None)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Analyzer":
        """The analyzer of a :meth:`to_dict`. A setting the dict lacks takes the value that gives
        the behaviour from before it existed (no accent folding, no CJK bigrams, no symbol
        suffixes), so an index built then analyses its queries as it analysed its documents."""
        known = {"lowercase", "stopwords", "stemmer", "token_pattern", *_BEFORE}
        unknown = set(data) - known
        if unknown:
            raise CascadeError(f"unknown analyzer settings: {', '.join(sorted(unknown))}")
        return cls(**{**_BEFORE, **data})
