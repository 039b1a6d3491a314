"""Parse filter strings.

    filter  := or
    or      := and (OR and)*
    and     := not (AND not)*
    not     := NOT not | atom
    atom    := '(' filter ')' | FIELD op literal | FIELD [NOT] IN '(' literal (',' literal)* ')'
    op      := '=' | '==' | '!=' | '<' | '<=' | '>' | '>='
    literal := NUMBER | "string" | 'string'        (dates are strings: "2020-01-31")

AND, OR, NOT and IN are case-insensitive. Errors are :class:`FilterSyntaxError` with a caret
under the offending token.

>>> str(parse_filter('year >= 2020 and (lang in ("en", "de") or not draft = "yes")'))
'year >= 2020 AND (lang IN ("en", "de") OR NOT draft = "yes")'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from cascade.core.errors import CascadeError
from cascade.core.lexing import scan
from cascade.filters.expr import OPS, And, Compare, Expr, In, Not, Or

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


@dataclass(frozen=True)
class Token:
    kind: str  # op, string, number, word, end
    text: str
    pos: int

    @property
    def keyword(self) -> str:
        return self.text.upper() if self.kind == "word" and self.text.upper() in _KEYWORDS else ""


def tokenize(text: str) -> list[Token]:
    return [Token(kind, value, pos) for kind, value, pos in scan(text, _TOKEN, FilterSyntaxError)]


def _literal(token: Token) -> Any:
    if token.kind == "string":
        return re.sub(r"\\(.)", r"\1", token.text[1:-1])
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
        op = self.tok
        if op.kind != "op" or op.text not in OPS + ("==",):
            raise self.fail(f"expected a comparison ({', '.join(OPS)}) or IN after {tok.text!r}")
        self.take()
        value = self._value(tok.text, kind)
        return Compare(tok.text, "=" if op.text == "==" else op.text, value)

    def _in(self, field: Token, kind: str | None) -> Expr:
        self.take()  # IN
        if self.tok.text != "(" or self.tok.kind != "op":
            raise self.fail("expected '(' after IN")
        self.take()
        values = [self._value(field.text, kind)]
        while self.tok.text == "," and self.tok.kind == "op":
            self.take()
            values.append(self._value(field.text, kind))
        if self.tok.text != ")" or self.tok.kind != "op":
            raise self.fail("expected ',' or ')'")
        self.take()
        return In(field.text, tuple(values))

    def _kind(self, field: Token) -> str | None:
        if self.spec is None:
            return None
        from cascade.filters.expr import _field_kind

        try:
            return _field_kind(self.spec, field.text)
        except CascadeError as err:
            raise FilterSyntaxError(self.text, field.pos, str(err)) from None

    def _value(self, field: str, kind: str | None) -> Any:
        tok = self.tok
        if tok.kind not in ("string", "number"):
            hint = " (quote strings and dates)" if tok.kind == "word" else ""
            raise self.fail(f"expected a number or a quoted string{hint}")
        self.take()
        value = _literal(tok)
        if kind is None:
            return value
        from cascade.filters.expr import bind_value

        try:
            return bind_value(kind, field, value)
        except CascadeError as err:
            raise FilterSyntaxError(self.text, tok.pos, str(err)) from None


def parse_filter(text: str, spec: Mapping[str, str] | None = None) -> Expr:
    """Parse a filter string; with ``spec`` (field -> type) check fields and literal types too."""
    if not isinstance(text, str):
        raise CascadeError(f"a filter string is needed, got {type(text).__name__}")
    return _Parser(text, spec).parse()
