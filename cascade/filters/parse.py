"""Parse filter strings.

    filter  := or
    or      := and (OR and)*
    and     := not (AND not)*
    not     := NOT not | atom
    atom    := '(' filter ')' | FIELD op literal | FIELD [NOT] IN '(' literal (',' literal)* ')'
             | FIELD IS [NOT] NULL
    op      := '=' | '==' | '!=' | '<' | '<=' | '>' | '>='
    literal := NUMBER | "string" | 'string'        (dates are strings: "2020-01-31")

AND, OR, NOT, IN, IS and NULL are case-insensitive. ``x NOT IN (...)`` is ``NOT x IN (...)``
and ``x IS NOT NULL`` is ``NOT x IS NULL``; a missing value makes a comparison unknown (see
:mod:`cascade.filters.expr`). Tokenizing and parsing take time linear in the text (an IN list
of 200,000 values parses in well under a second). Errors are :class:`FilterSyntaxError` with a
caret under the offending token.

>>> str(parse_filter('year >= 2020 and (lang in ("en", "de") or not draft = "yes")'))
'year >= 2020 AND (lang IN ("en", "de") OR NOT draft = "yes")'
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple

from cascade.core.errors import CascadeError
from cascade.filters.expr import OPS, And, Compare, Expr, In, Missing, Not, Or, _field_kind, bind_value

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>==|!=|<=|>=|[=<>(),])
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w.]))
    | (?P<word>[A-Za-z_]\w*)
    )""",
    re.VERBOSE,
)
_INT = re.compile(r"[+-]?\d{1,4300}")
_KEYWORDS = {"AND", "OR", "NOT", "IN"}
MAX_DEPTH = 64


class FilterSyntaxError(CascadeError):
    """A filter string that does not parse or does not fit the index; points at the token."""

    def __init__(self, text: str, pos: int, message: str) -> None:
        self.text, self.pos = text, pos
        super().__init__(f"{message}\n  {text}\n  {' ' * pos}^")


class Token(NamedTuple):
    kind: str  # op, string, number, word, end
    text: str
    pos: int

    @property
    def keyword(self) -> str:
        return self.text.upper() if self.kind == "word" and self.text.upper() in _KEYWORDS else ""


_TRAILING_SPACE = re.compile(r"\s*\Z")
_NON_SPACE = re.compile(r"\S")


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, then an ``end`` token; one pass (``cascade.core.lexing.scan``
    does the same but slices the rest of the text at every token: quadratic on long lists)."""
    tokens, pos, n = [], 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if _TRAILING_SPACE.match(text, pos):
                break
            found = _NON_SPACE.search(text, pos)
            bad = found.start() if found else pos
            raise FilterSyntaxError(text, bad, f"unexpected character {text[bad]!r}")
        kind = m.lastgroup or "word"
        tokens.append(Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(Token("end", "", n))
    return tokens


def _literal(token: Token) -> Any:
    if token.kind == "string":
        body = token.text[1:-1]
        return re.sub(r"\\(.)", r"\1", body) if "\\" in body else body
    if _INT.fullmatch(token.text):
        return int(token.text)
    return float(token.text)


class _Parser:
    def __init__(self, text: str, spec: Mapping[str, str] | None) -> None:
        self.text, self.spec = text, spec
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, message: str, token: Token | None = None) -> FilterSyntaxError:
        token = token or self.tok
        found = "end of input" if token.kind == "end" else repr(token.text)
        return FilterSyntaxError(self.text, token.pos, f"{message}, found {found}")

    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise self.fail("empty filter: expected a condition such as year >= 2020")
        expr = self.or_()
        if self.tok.kind != "end":
            raise self.fail("expected AND, OR or the end of the filter")
        return expr

    def or_(self) -> Expr:
        items = [self.and_()]
        while self.tok.keyword == "OR":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self) -> Expr:
        items = [self.not_()]
        while self.tok.keyword == "AND":
            self.take()
            items.append(self.not_())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self) -> Expr:
        if self.tok.keyword == "NOT":
            self.take()
            self._enter()
            inner = self.not_()
            self.depth -= 1
            return Not(inner)
        return self.atom()

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"filter nested more than {MAX_DEPTH} levels deep")

    def atom(self) -> Expr:
        tok = self.tok
        if tok.kind == "op" and tok.text == "(":
            self.take()
            self._enter()
            inner = self.or_()
            self.depth -= 1
            if self.tok.text != ")" or self.tok.kind != "op":
                raise self.fail("expected ')'")
            self.take()
            return inner
        if tok.kind != "word" or tok.keyword:
            raise self.fail("expected a field name")
        self.take()
        kind = self._kind(tok)
        if self.tok.keyword == "NOT":
            self.take()
            if self.tok.keyword != "IN":
                raise self.fail("expected IN after NOT")
            return Not(self._in(tok, kind))
        if self.tok.keyword == "IN":
            return self._in(tok, kind)
        if self.tok.kind == "word" and self.tok.text.upper() == "IS":
            self.take()
            negated = self.tok.keyword == "NOT"
            if negated:
                self.take()
            if self.tok.kind != "word" or self.tok.text.upper() != "NULL":
                raise self.fail("expected NULL after IS" + ("" if negated else " (or IS NOT NULL)"))
            self.take()
            return Not(Missing(tok.text)) if negated else Missing(tok.text)
        op = self.tok
        if op.kind != "op" or op.text not in OPS + ("==",):
            raise self.fail(f"expected a comparison ({', '.join(OPS)}), IN or IS NULL after {tok.text!r}")
        self.take()
        value = self._value(tok.text, kind)
        return Compare(tok.text, "=" if op.text == "==" else op.text, value)

    def _in(self, field: Token, kind: str | None) -> Expr:
        self.take()  # IN
        if self.tok.text != "(" or self.tok.kind != "op":
            raise self.fail("expected '(' after IN")
        self.take()
        values = [self._value(field.text, kind)]
        tokens = self.tokens
        while tokens[self.i].text == "," and tokens[self.i].kind == "op":
            self.i += 1
            values.append(self._value(field.text, kind))
        if self.tok.text != ")" or self.tok.kind != "op":
            raise self.fail("expected ',' or ')'")
        self.take()
        return In(field.text, tuple(values))

    def _kind(self, field: Token) -> str | None:
        if self.spec is None:
            return None
        try:
            return _field_kind(self.spec, field.text)
        except CascadeError as err:
            raise FilterSyntaxError(self.text, field.pos, str(err)) from None

    def _value(self, field: str, kind: str | None) -> Any:
        tok = self.tokens[self.i]
        if tok.kind != "string" and tok.kind != "number":
            hint = " (quote strings and dates)" if tok.kind == "word" else ""
            raise self.fail(f"expected a number or a quoted string{hint}")
        self.i += 1
        value = _literal(tok)
        if kind is None:
            return value
        try:
            return bind_value(kind, field, value)
        except CascadeError as err:
            raise FilterSyntaxError(self.text, tok.pos, str(err)) from None


def parse_filter(text: str, spec: Mapping[str, str] | None = None) -> Expr:
    """Parse a filter string; with ``spec`` (field -> type) check fields and literal types too."""
    if not isinstance(text, str):
        raise CascadeError(f"a filter string is needed, got {type(text).__name__}")
    return _Parser(text, spec).parse()


def compile_filter(where: str | Expr | None, spec: Mapping[str, str]) -> Expr | None:
    """A checked filter for an index whose filter fields are ``spec`` (None stays None)."""
    if where is None:
        return None
    if isinstance(where, str):
        return parse_filter(where, spec)
    if isinstance(where, Expr):
        return where.bind(spec)
    raise CascadeError(f"a filter is a string or built with cascade.F, not {type(where).__name__}")
