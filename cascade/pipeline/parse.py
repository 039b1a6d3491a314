"""Parse pipeline strings: the same grammar and precedence as the Python operators.

    pipeline := union
    union    := then ('|' then)*
    then     := plus ('>>' plus)*
    plus     := mul ('+' mul)*
    mul      := (NUMBER '*' atom | atom) ('%' INT | '*' NUMBER)*
    atom     := NAME ['(' [arg (',' arg)*] ')'] | '(' pipeline ')'
    arg      := NAME '=' value | pipeline | value        value := NUMBER | WORD | STRING

>>> from cascade.pipeline.parse import tokenize
>>> [t.text for t in tokenize("rrf(bm25, run(runs/a.trec)) % 100")]
['rrf', '(', 'bm25', ',', 'run', '(', 'runs/a.trec', ')', ')', '%', '100', '']
"""

from __future__ import annotations

import difflib
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

from cascade.core.errors import BadIndexError, CascadeError, DataError, NotOffered
from cascade.core.lexing import scan
from cascade.core.nodes import Pipeline
from cascade.core.registry import Context, lookup, stage_names
from cascade.fuse.to_docs import documents_by_default
from cascade.pipeline import builtins

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>>>|[%|+*(),=])
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<word>[\w./~:-]+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"\d{1,4300}")  # longer: not an int (Python refuses to convert it)
MAX_DEPTH = 64  # parentheses and stage arguments nested deeper are a syntax error


class PipelineSyntaxError(CascadeError):
    """A pipeline string that does not parse; the message points at the offending token."""

    def __init__(self, text: str, pos: int, message: str) -> None:
        self.text, self.pos = text, pos
        caret = " " * pos + "^"
        super().__init__(f"{message}\n  {text}\n  {caret}")


@dataclass(frozen=True)
class Token:
    kind: str  # op, string, word, end
    text: str
    pos: int


def _scan_error(text: str, pos: int, message: str) -> PipelineSyntaxError:
    hints = {">": "; did you mean '>>'?", "&": "; fuse with rrf(a, b) or a + b, pool with a | b"}
    return PipelineSyntaxError(text, pos, message + hints.get(text[pos], ""))


def tokenize(text: str) -> list[Token]:
    return [Token(kind, value, pos) for kind, value, pos in scan(text, _TOKEN, _scan_error)]


def _value(token: Token) -> Any:
    if token.kind == "string":
        return re.sub(r"\\(.)", r"\1", token.text[1:-1])
    if token.text in ("true", "false"):
        return token.text == "true"
    if _NUMBER.fullmatch(token.text):
        return int(token.text) if _INT.fullmatch(token.text.lstrip("+-")) else float(token.text)
    return token.text


class _Placeholder(Pipeline):
    """Stands in for a stage during the syntax-only pass."""

    def __init__(self, name: str, pos: int) -> None:
        self.name, self.pos = name, pos

    def key(self) -> tuple[Any, ...]:
        return ("placeholder", self.name, self.pos)

    def __str__(self) -> str:
        return self.name


class Parser:
    def __init__(self, text: str, ctx: Context, dry: bool = False) -> None:
        self.text, self.ctx, self.dry = text, ctx, dry
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"pipeline nested more than {MAX_DEPTH} levels deep")

    def combine(self, op: Token, apply: Callable[[Any, Any], Pipeline], left: Any, right: Any) -> Pipeline:
        """``apply(left, right)`` (an operator), its CascadeError pointing at the operator ``op``."""
        try:
            return apply(left, right)
        except PipelineSyntaxError:
            raise
        except CascadeError as exc:
            raise PipelineSyntaxError(self.text, op.pos, str(exc)) from None

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> Token:
        if self.tok.text != text or self.tok.kind not in ("op",):
            self.fail(f"expected {text!r}")
        return self.take()

    def fail(self, message: str, token: Token | None = None) -> None:
        token = token or self.tok
        found = "end of input" if token.kind == "end" else repr(token.text)
        raise PipelineSyntaxError(self.text, token.pos, f"{message}, found {found}")

    def is_op(self, text: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == text

    # -- grammar --------------------------------------------------------------------------

    def parse(self) -> Pipeline:
        if self.tok.kind == "end":
            raise PipelineSyntaxError(self.text, 0, "empty pipeline")
        node = self.union()
        if self.tok.kind != "end":
            self.fail("expected an operator (>>, %, |, +, *) or the end")
        return node

    def union(self) -> Pipeline:
        node = self.then()
        while self.is_op("|"):
            op = self.take()
            right = self.then()
            node = self.combine(op, operator.or_, node, right)
        return node

    def then(self) -> Pipeline:
        node = self.plus()
        while self.is_op(">>"):
            op = self.take()
            right = self.plus()
            node = self.combine(op, operator.rshift, node, right)
        return node

    def plus(self) -> Pipeline:
        node = self.mul()
        while self.is_op("+"):
            op = self.take()
            right = self.mul()
            node = self.combine(op, operator.add, node, right)
        return node

    def mul(self) -> Pipeline:
        if self.tok.kind == "word" and _NUMBER.fullmatch(self.tok.text) and self.peek().text == "*":
            weight = float(self.take().text)
            op = self.take()
            node = self.combine(op, operator.mul, weight, self.atom())
        else:
            node = self.atom()
        while self.is_op("%") or self.is_op("*"):
            op = self.take()
            arg = self.tok
            if op.text == "%":
                if arg.kind != "word" or not _INT.fullmatch(arg.text) or int(arg.text) < 1:
                    self.fail("a cutoff needs a positive integer after '%'")
                node = self.combine(op, operator.mod, node, int(self.take().text))
            else:
                if arg.kind != "word" or not _NUMBER.fullmatch(arg.text):
                    self.fail("a weight needs a number after '*'")
                node = self.combine(op, operator.mul, node, float(self.take().text))
        return node

    def atom(self) -> Pipeline:
        if self.is_op("("):
            self.take()
            self.enter()
            node = self.union()
            self.depth -= 1
            self.expect(")")
            return node
        token = self.tok
        if token.kind != "word" or not token.text.isidentifier():
            self.fail("expected a stage name or '('")
        self.take()
        entry = lookup(token.text)
        if entry is None:
            self.unknown_stage(token)
            raise AssertionError  # unknown_stage raises
        positional: list[Any] = []
        params: dict[str, Any] = {}
        if self.is_op("("):
            self.take()
            self.enter()
            while not self.is_op(")"):
                self.argument(entry.takes_pipelines, positional, params)
                if not self.is_op(","):
                    break
                self.take()
            self.depth -= 1
            self.expect(")")
        try:
            if self.dry and not entry.takes_pipelines:  # check names and parameters before building anything
                entry.check(positional, params)
                return _Placeholder(token.text, token.pos)
            return entry.make(self.ctx, positional, params)
        except (PipelineSyntaxError, DataError, BadIndexError, NotOffered):
            raise  # syntax errors carry their own position; data, index and policy errors are not about the text
        except CascadeError as exc:
            message = str(exc)
            prefix = f"{token.text}: "
            raise PipelineSyntaxError(self.text, token.pos, message if message.startswith(prefix)
                                      else prefix + message) from None

    def argument(self, takes_pipelines: bool, positional: list[Any], params: dict[str, Any]) -> None:
        if self.tok.kind == "word" and self.tok.text.isidentifier() and self.peek().text == "=":
            name_token = self.take()
            name = name_token.text
            self.take()
            if name in params:
                self.fail(f"parameter {name!r} given twice", name_token)
            value = self.take()
            if value.kind not in ("word", "string"):
                self.fail(f"expected a value for {name}", value)
            params[name] = _value(value)
        elif params:
            self.fail("positional arguments must come before name=value parameters")
        elif takes_pipelines:
            positional.append(self.union())
        else:
            value = self.take()
            if value.kind not in ("word", "string"):
                self.fail("expected a value", value)
            positional.append(_value(value))

    def unknown_stage(self, token: Token) -> None:
        names = stage_names()
        lower = {n.lower(): n for n in names}
        close = [lower[token.text.lower()]] if token.text.lower() in lower else \
            difflib.get_close_matches(token.text, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PipelineSyntaxError(
            self.text, token.pos, f"unknown stage {token.text!r}{hint} (stages: {', '.join(names)})"
        )


def parse(text: str, ctx: Context | None = None, *, index: Any = None, root: Any = None,
          passages: bool = False) -> Pipeline:
    """Build a pipeline from its string form.

    Stages that need an index (``bm25``, ``rm3``) take it from ``index`` or ``ctx``; paths
    in stage arguments (``run(runs/x.trec)``) may be relative to ``root``. Over a passage
    index the pipeline answers with documents (``>> to_docs`` is appended when it holds no
    ``to_docs``) unless ``passages=True`` (see :mod:`cascade.fuse.to_docs`).
    """
    if not isinstance(text, str):
        raise CascadeError(f"a pipeline string is needed (got {type(text).__name__})")
    ctx = ctx or Context.of(index=index, root=root)
    builtins.load()
    try:
        Parser(text, ctx, dry=True).parse()  # syntax and names first, before building anything
        node = Parser(text, ctx).parse()
        return node if passages else documents_by_default(node, ctx.opened_index())
    except RecursionError:
        raise PipelineSyntaxError(text, 0, "pipeline nested too deeply") from None
