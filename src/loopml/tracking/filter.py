"""The run-search filter language and order-by keys, compiled to SQLAlchemy over the `runs` table.

```
filter     := disjunction
disjunction:= conjunction ("or" conjunction)*          -- "and" binds tighter than "or"
conjunction:= primary ("and" primary)*
primary    := "(" disjunction ")" | comparison
comparison := ident op value | ident ["not"] "in" "(" value ("," value)* ")"
op         := = | != | < | <= | > | >= | like | ilike
ident      := (metrics|params|tags|attributes) "." key | attribute     -- e.g. params.model.depth, tags.`a b`
value      := number | 'string' | "string"                              -- backslash escapes the quote
```
Keywords are case-insensitive. Metrics and `start_time`/`end_time` compare as numbers; params, tags and the
other attributes as strings (a number literal stands for its `str()`, so `params.depth = 3` matches "3").
A run that lacks the metric, param or tag, or whose latest metric value is NaN (NULL), never matches.
`like` and `ilike` use `\\` as the escape character on every backend. `like` is case-sensitive on
PostgreSQL but, as SQLite's LIKE is, case-insensitive for ASCII letters on SQLite; `ilike` is
case-insensitive everywhere.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

from sqlalchemy import ColumnElement, Table, and_, or_, select

from loopml.core.errors import InvalidFilter
from loopml.storage.metadata.schema import latest_metrics, params, runs, tags

Scalar: TypeAlias = float | int | str
Value: TypeAlias = Scalar | tuple[Scalar, ...]

_COLUMNS = ("run_id", "name", "status", "start_time", "end_time", "experiment_id", "git_commit", "git_branch")
_ATTRIBUTES = {c: c for c in (*_COLUMNS, "parent_run_id", "note", "lifecycle")} | {
    "user": "user_name"
}  # -> column
# MLflow's attribute names, so its filters work unchanged (`attributes.run_name`, `lifecycle_stage`, `user_id`).
_ALIASES = {"run_name": "name", "user_name": "user", "user_id": "user", "lifecycle_stage": "lifecycle"}
_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
_KINDS = ("metric", "param", "tag", "attribute")
_PREFIXES = {kind + plural: kind for kind in _KINDS for plural in ("", "s")} | {"attr": "attribute"}
_TABLES: dict[str, Table] = {"metric": latest_metrics, "param": params, "tag": tags}
_KEYWORDS = frozenset({"and", "or", "not", "in", "like", "ilike", "asc", "desc"})
_NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in")
_STRING_OPS = ("=", "!=", "like", "ilike", "in", "not in")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY = re.compile(r"[A-Za-z0-9_\-./:]+")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT64 = 2**63
_COMPARE = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Comparison:
    """One condition: `kind` is "metric", "param", "tag" or "attribute"; `op` one of =, !=, <, <=, >, >=,
    like, ilike, in, not in (`value` is then a tuple). `position` is the offset in the filter text and does
    not take part in equality."""

    kind: str
    key: str
    op: str
    value: Value
    position: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class BoolOp:
    """`op` ("and" or "or") over two or more operands; nested operands never have the same `op`."""

    op: str
    operands: tuple[Expr, ...]


Expr: TypeAlias = Comparison | BoolOp


@dataclass(frozen=True)
class OrderKey:
    """One order-by key: `kind` and `key` as in `Comparison`; ascending unless `descending`."""

    kind: str
    key: str
    descending: bool = False


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, string, number, op, keyword, "(", ")", ",", end
    text: str
    pos: int
    value: Scalar = ""  # the key, the literal's value or the lower-cased keyword
    prefix: str = ""  # identifiers only: metric, param, tag or attribute


def _is_numeric(kind: str, key: str) -> bool:
    return kind == "metric" or (kind == "attribute" and key in _NUMERIC_ATTRIBUTES)


def _fail(message: str, text: str, position: int) -> NoReturn:
    raise InvalidFilter(message, text=text, position=position)


def _attribute(name: str, text: str, position: int) -> str:
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in _ATTRIBUTES:
        valid = ", ".join(["metrics.<key>", "params.<key>", "tags.<key>", *sorted([*_ATTRIBUTES, *_ALIASES])])
        _fail(f"unknown attribute {name!r}: expected one of {valid}", text, position)
    return name


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The unescaped content of the quoted text at `start` and the offset after its closing quote."""
    quote, chars, i = text[start], [], start + 1
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 2] in (quote, "\\"):
            chars.append(text[i + 1])
            i += 2
        elif text[i] == quote:
            return "".join(chars), i + 1
        else:
            chars.append(text[i])
            i += 1
    _fail(f"unterminated quoted text: expected a closing {quote}, found end of input", text, start)


def _identifier(text: str, word: re.Match[str]) -> _Token:
    start, end = word.span()
    if text[end : end + 1] != ".":
        lower = word.group().lower()
        if lower in _KEYWORDS:
            return _Token("keyword", word.group(), start, lower)
        return _Token("ident", word.group(), start, _attribute(word.group(), text, start), "attribute")
    prefix = _PREFIXES.get(word.group().lower())
    if prefix is None:
        message = f"unknown prefix {word.group()!r}: expected metrics., params., tags. or attributes."
        _fail(message, text, start)
    key_pos = end + 1
    if text[key_pos : key_pos + 1] in ("`", '"', "'"):
        key, end = _quoted(text, key_pos)
    else:
        match = _KEY.match(text, key_pos)
        key, end = (match.group(), match.end()) if match else ("", key_pos)
    if not key:
        found = repr(text[key_pos]) if key_pos < len(text) else "end of input"
        _fail(f"expected a key after {text[start:key_pos]!r}, found {found}", text, start)
    if prefix == "attribute":
        key = _attribute(key, text, key_pos)
    return _Token("ident", text[start:end], start, key, prefix)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in "(),":
            token = _Token(char, char, i)
        elif char in "<>!=":
            op = text[i : i + 2] if text[i : i + 2] in ("<=", ">=", "!=") else char
            if op == "!":
                _fail("expected '!=', found '!'", text, i)
            token = _Token("op", op, i)
        elif char in "'\"":
            value, end = _quoted(text, i)
            token = _Token("string", text[i:end], i, value)
        elif number := _NUMBER.match(text, i):
            token = _Token("number", number.group(), i, _number(number.group(), text, i))
        elif word := _WORD.match(text, i):
            token = _identifier(text, word)
        else:
            _fail(f"unexpected character {char!r}", text, i)
        tokens.append(token)
        i = token.pos + len(token.text)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _number(literal: str, text: str, position: int) -> float | int:
    if len(literal) > MAX_NUMBER_CHARS:
        _fail(f"a number literal is longer than {MAX_NUMBER_CHARS} characters", text, position)
    value: float | int = int(literal) if literal.lstrip("-").isdigit() else float(literal)
    if isinstance(value, int) and abs(value) >= _INT64:
        value = float(literal)  # a database integer cannot hold it
    if not math.isfinite(value):
        _fail(f"the number {literal} is out of range", text, position)
    return value


MAX_NESTING = 50  # deeper parentheses are refused before they can exhaust Python's stack
# A filter is one query: the database's work grows with the square of its comparisons (each an EXISTS), so
# one request could otherwise hold a database connection for minutes.
MAX_FILTER_CHARS = 10_000
MAX_COMPARISONS = 100
MAX_NUMBER_CHARS = 400  # a float's longest exact decimal form is far shorter; ints beyond it are out of range


def _dangling_escape(pattern: str) -> bool:
    """True when the pattern ends with a backslash that escapes nothing (PostgreSQL refuses it)."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.comparisons = 0
        self.index = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def next(self) -> _Token:
        token = self.tokens[self.index]
        self.index += token.kind != "end"
        return token

    def at(self, kind: str, *keywords: str) -> bool:
        token = self.peek()
        return token.kind == kind and (not keywords or token.value in keywords)

    def accept(self, kind: str, *keywords: str) -> bool:
        """Consume the next token if it is of `kind` (and one of `keywords`)."""
        if self.at(kind, *keywords):
            self.next()
            return True
        return False

    def expect(self, kind: str, expected: str) -> None:
        if not self.accept(kind):
            self.fail(expected)

    def fail(self, expected: str, token: _Token | None = None) -> NoReturn:
        token = token or self.peek()
        found = "end of input" if token.kind == "end" else token.text
        found = found if token.kind in ("string", "end") else repr(found)
        _fail(f"expected {expected}, found {found}", self.text, token.pos)

    def ident(self) -> _Token:
        token = self.next()
        if token.kind != "ident":
            self.fail("metrics.<key>, params.<key>, tags.<key> or an attribute name", token)
        return token

    def expression(self) -> Expr:
        return self.boolean("or", lambda: self.boolean("and", self.primary))

    def boolean(self, op: str, operand: Callable[[], Expr]) -> Expr:
        items: list[Expr] = [operand()]
        while self.accept("keyword", op):
            items.append(operand())
        if len(items) == 1:
            return items[0]
        flat: list[Expr] = []
        for item in items:
            flat.extend(item.operands if isinstance(item, BoolOp) and item.op == op else [item])
        return BoolOp(op, tuple(flat))

    def primary(self) -> Expr:
        opening = self.peek().pos
        if not self.accept("("):
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_NESTING:
            _fail(f"parentheses nest deeper than {MAX_NESTING} levels", self.text, opening)
        inner = self.expression()
        self.depth -= 1
        if self.at("end"):
            _fail("unbalanced parentheses: this '(' is never closed", self.text, opening)
        self.expect(")", "'and', 'or' or ')'")
        return inner

    def comparison(self) -> Comparison:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            _fail(f"the filter has more than {MAX_COMPARISONS} comparisons", self.text, self.peek().pos)
        ident = self.ident()
        kind, key = ident.prefix, str(ident.value)
        numeric = _is_numeric(kind, key)
        token = self.next()
        if token.kind == "op" or (token.kind == "keyword" and token.value in ("like", "ilike", "in")):
            op = str(token.value or token.text)
        elif token.kind == "keyword" and token.value == "not" and self.at("keyword", "in"):
            op = "not " + str(self.next().value)
        else:
            self.fail("a comparison operator (=, !=, <, <=, >, >=, like, ilike, in, not in)", token)
        allowed = _NUMERIC_OPS if numeric else _STRING_OPS
        if op not in allowed:
            what = "a number" if numeric else "a string (compare numbers with metrics.<key>)"
            message = f"{op!r} does not apply to {ident.text}, {what}: use {', '.join(allowed)}"
            _fail(message, self.text, token.pos)
        if op not in ("in", "not in"):
            return Comparison(kind, key, op, self.value(ident.text, op, numeric), ident.pos)
        self.expect("(", f"'(' after {op!r}")
        values = [self.value(ident.text, op, numeric)]
        while self.accept(","):
            values.append(self.value(ident.text, op, numeric))
        self.expect(")", "',' or ')'")
        return Comparison(kind, key, op, tuple(values), ident.pos)

    def value(self, name: str, op: str, numeric: bool) -> Scalar:
        token = self.next()
        if op in ("like", "ilike") and token.kind != "string":
            self.fail("a quoted pattern", token)
        if op in ("like", "ilike") and _dangling_escape(str(token.value)):
            _fail(
                "a pattern cannot end with an unescaped backslash (use '\\\\' for one)", self.text, token.pos
            )
        if token.kind not in ("number", "string"):
            self.fail("a number or a quoted string", token)
        if numeric and token.kind == "string":
            _fail(f"{name} is a number: expected a number, found {token.text}", self.text, token.pos)
        return token.value if numeric else str(token.value)


def parse_filter(text: str | None) -> Expr | None:
    """Parse a filter; None for no filter (None, empty or blank text). Raises `InvalidFilter`."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_CHARS:
        _fail(f"the filter is longer than {MAX_FILTER_CHARS} characters", text[:200], 0)
    parser = _Parser(text)
    expr = parser.expression()
    if parser.at(")"):
        _fail("unbalanced parentheses: this ')' has no matching '('", text, parser.peek().pos)
    if not parser.at("end"):
        parser.fail("'and', 'or' or end of input")
    return expr


def compile_filter(expr: Expr | None) -> ColumnElement[bool] | None:
    """A WHERE condition over `runs` (each comparison an EXISTS on its table), or None for no filter."""
    if expr is None:
        return None
    if isinstance(expr, BoolOp):
        parts = [part for part in map(compile_filter, expr.operands) if part is not None]
        return and_(*parts) if expr.op == "and" else or_(*parts)
    if expr.kind == "attribute":
        return _condition(runs.c[_ATTRIBUTES[expr.key]], expr)
    table = _TABLES[expr.kind]
    condition = _condition(table.c.value, expr)
    query = select(table.c.run_id).where(table.c.run_id == runs.c.run_id, table.c.key == expr.key, condition)
    return query.exists()


def _condition(column: ColumnElement[Any], expr: Comparison) -> ColumnElement[bool]:
    values = expr.value if isinstance(expr.value, tuple) else (expr.value,)
    if not _is_numeric(expr.kind, expr.key):
        values = tuple(map(str, values))
    elif expr.kind == "metric" or any(isinstance(value, float) for value in values):
        # SQLAlchemy types a number's bind from the Python value and, on PostgreSQL, casts every value of an
        # IN list to the first one's type: an int first would truncate the floats after it to INTEGER.
        values = tuple(map(float, values))
    if expr.op in ("in", "not in"):
        return column.in_(values) if expr.op == "in" else column.not_in(values)
    if expr.op in ("like", "ilike"):
        # The same escape character everywhere: PostgreSQL defaults to "\", SQLite to none.
        like = column.like if expr.op == "like" else column.ilike
        return like(str(values[0]), escape="\\")
    result: ColumnElement[bool] = _COMPARE[expr.op](column, values[0])
    return result


def parse_order_by(items: Sequence[str] | str | None) -> list[OrderKey]:
    """Parse order-by items such as `["metrics.auc DESC", "start_time"]`; a string may hold several items
    separated by commas. Ascending unless `desc` (case-insensitive). Raises `InvalidFilter`."""
    if items is None:
        return []
    keys: list[OrderKey] = []
    for item in [items] if isinstance(items, str) else items:
        if not item.strip():
            continue
        parser = _Parser(item)
        while True:
            ident = parser.ident()
            descending = parser.at("keyword", "asc", "desc") and parser.next().value == "desc"
            keys.append(OrderKey(ident.prefix, str(ident.value), descending))
            if parser.at("end"):
                break
            parser.expect(",", "',', 'asc', 'desc' or end of input")
    return keys


def order_by_clauses(keys: Sequence[OrderKey]) -> list[ColumnElement[Any]]:
    """ORDER BY clauses over `runs` for `keys`; missing values (and NaN metrics) sort last in both directions.

    Params and tags sort as strings. `start_time DESC, run_id` are appended unless already given, so the
    order is total.
    """
    clauses: list[ColumnElement[Any]] = []
    for key in keys:
        if key.kind == "attribute":
            expr: ColumnElement[Any] = runs.c[_ATTRIBUTES[_ALIASES.get(key.key, key.key)]]
        else:
            table = _TABLES[key.kind]
            query = select(table.c.value).where(table.c.run_id == runs.c.run_id, table.c.key == key.key)
            expr = query.scalar_subquery()
        clauses.append((expr.desc() if key.descending else expr.asc()).nulls_last())
    given = {key.key for key in keys if key.kind == "attribute"}
    if "start_time" not in given:
        clauses.append(runs.c.start_time.desc())
    if "run_id" not in given:
        clauses.append(runs.c.run_id.asc())
    return clauses
