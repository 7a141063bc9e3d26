"""The run-search filter language: parsing, error positions, SQL semantics on SQLite, and order-by."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select

from loopml.core.errors import InvalidFilter
from loopml.storage.metadata.database import Database
from loopml.storage.metadata.schema import experiments, latest_metrics, params, runs, tags
from loopml.tracking.filter import (
    BoolOp,
    Comparison,
    Expr,
    OrderKey,
    compile_filter,
    order_by_clauses,
    parse_filter,
    parse_order_by,
)

# -- parsing ------------------------------------------------------------------------------------------------


def m(key: str, op: str, value: Any, kind: str = "metric") -> Comparison:
    return Comparison(kind, key, op, value)


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_blank_means_no_filter(text: str | None) -> None:
    assert parse_filter(text) is None
    assert compile_filter(None) is None


def test_the_example_parses() -> None:
    expr = parse_filter("metrics.auc > 0.9 and params.model = \"rf\" and tags.team = 'risk'")
    assert expr == BoolOp(
        "and", (m("auc", ">", 0.9), m("model", "=", "rf", "param"), m("team", "=", "risk", "tag"))
    )


def test_and_binds_tighter_than_or() -> None:
    a, b, c = m("a", "=", 1), m("b", "=", 2), m("c", "=", 3)
    assert parse_filter("metrics.a = 1 or metrics.b = 2 and metrics.c = 3") == BoolOp(
        "or", (a, BoolOp("and", (b, c)))
    )
    assert parse_filter("metrics.a = 1 AND metrics.b = 2 Or metrics.c = 3") == BoolOp(
        "or", (BoolOp("and", (a, b)), c)
    )
    assert parse_filter("(metrics.a = 1 or metrics.b = 2) and metrics.c = 3") == BoolOp(
        "and", (BoolOp("or", (a, b)), c)
    )


def test_same_operator_is_flattened() -> None:
    a, b, c = m("a", "=", 1), m("b", "=", 2), m("c", "=", 3)
    expected = BoolOp("or", (a, b, c))
    assert parse_filter("metrics.a=1 or metrics.b=2 or metrics.c=3") == expected
    assert parse_filter("((metrics.a=1 or (metrics.b=2)) or metrics.c=3)") == expected
    assert parse_filter("((metrics.a = 1))") == a


def test_positions_are_recorded() -> None:
    expr = parse_filter("metrics.a = 1 and  tags.t = 'x'")
    assert isinstance(expr, BoolOp)
    assert [op.position for op in expr.operands if isinstance(op, Comparison)] == [0, 19]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.`my metric-1` >= 2", m("my metric-1", ">=", 2)),
        ('params."a.b" = "x"', m("a.b", "=", "x", "param")),
        ("params.model.depth = 3", m("model.depth", "=", "3", "param")),
        ("params.a/b:c-d_e = 'x'", m("a/b:c-d_e", "=", "x", "param")),
        ("params.`we\\`ird` = 'x'", m("we`ird", "=", "x", "param")),
        ("tags.t = 'it\\'s'", m("t", "=", "it's", "tag")),
        ('tags.t = "say \\"hi\\""', m("t", "=", 'say "hi"', "tag")),
        ("tags.t = 'back\\\\slash'", m("t", "=", "back\\slash", "tag")),
        ("tags.t = '50\\%'", m("t", "=", "50\\%", "tag")),
        ("metric.a<-1", m("a", "<", -1)),
        ("metrics.a > .5", m("a", ">", 0.5)),
        ("metrics.a > 1.", m("a", ">", 1.0)),
        ("metrics.a > -2.5E-3", m("a", ">", -0.0025)),
        ("metrics.a > 1e+3", m("a", ">", 1000.0)),
        ("metrics.a > 99999999999999999999", m("a", ">", 1e20)),
        ("params.lr = 0.10", m("lr", "=", "0.1", "param")),
        ("params.lr = 1e-5", m("lr", "=", "1e-05", "param")),
        ("params.m IN ('a', 3, \"b\")", m("m", "in", ("a", "3", "b"), "param")),
        ("params.m not In ('a')", m("m", "not in", ("a",), "param")),
        ("metrics.a in (1, 2.5)", m("a", "in", (1, 2.5))),
        ("tags.t LIKE 'a%'", m("t", "like", "a%", "tag")),
        ("tags.t iLike 'a%'", m("t", "ilike", "a%", "tag")),
        ("run_name = 'x'", m("name", "=", "x", "attribute")),
        ("attributes.run_name = 'x'", m("name", "=", "x", "attribute")),
        ("attr.user = 'x'", m("user", "=", "x", "attribute")),
        ("Status != 'FAILED'", m("status", "!=", "FAILED", "attribute")),
        ("experiment_id = 1", m("experiment_id", "=", "1", "attribute")),
        ("start_time >= 1700000000000", m("start_time", ">=", 1700000000000, "attribute")),
        ("attributes.`end_time` < 5", m("end_time", "<", 5, "attribute")),
        ("params.end_time = 5", m("end_time", "=", "5", "param")),
    ],
)
def test_comparisons(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


ERRORS = [
    ("metrics.auc >> 3", 13, "expected a number or a quoted string, found '>'"),
    ("metrics.auc == 3", 13, "expected a number or a quoted string, found '='"),
    ("attributes.colour = 1", 11, "unknown attribute 'colour'"),
    ("colour = 1", 0, "expected one of metrics.<key>, params.<key>, tags.<key>, end_time, experiment_id"),
    ("metrics. > 1", 0, "expected a key after 'metrics.', found ' '"),
    ("metrics.", 0, "expected a key after 'metrics.', found end of input"),
    ("metrics.`` > 1", 0, "expected a key"),
    ("metrics.`abc > 1", 8, "unterminated quoted text: expected a closing `"),
    ("tags.t = 'abc", 9, "unterminated quoted text: expected a closing '"),
    ('tags.t = "ab\\"', 9, 'expected a closing "'),
    ("metrics.a > 1 2", 14, "expected 'and', 'or' or end of input, found '2'"),
    ("metrics.a > 1 metrics.b", 14, "found 'metrics.b'"),
    ("(metrics.a > 1", 0, "unbalanced parentheses: this '(' is never closed"),
    ("((metrics.a > 1)", 0, "never closed"),
    ("metrics.a > 1)", 13, "unbalanced parentheses: this ')' has no matching '('"),
    ("(metrics.a > 1 tags.t = 'x')", 15, "expected 'and', 'or' or ')'"),
    ("()", 1, "expected metrics.<key>, params.<key>, tags.<key> or an attribute name, found ')'"),
    ("metrics.a > 1 and", 17, "found end of input"),
    ("and metrics.a > 1", 0, "found 'and'"),
    ("metrics.a 1", 10, "expected a comparison operator"),
    ("metrics.a", 9, "expected a comparison operator (=, !=, <, <=, >, >=, like, ilike, in, not in)"),
    ("metrics.a not like 'x'", 10, "expected a comparison operator"),
    ("metrics.a ! 1", 10, "expected '!=', found '!'"),
    ("metrics.a = 1 ; drop", 14, "unexpected character ';'"),
    ("metrics.a = 'x'", 12, "metrics.a is a number: expected a number, found 'x'"),
    ("metrics.a in (1, 'x')", 17, "found 'x'"),
    ("start_time > '2024'", 13, "start_time is a number"),
    ("metrics.a like '%'", 10, "'like' does not apply to metrics.a, a number"),
    ("metrics.a ilike '%'", 10, "'ilike' does not apply"),
    ("params.p < 3", 9, "'<' does not apply to params.p, a string (compare numbers with metrics.<key>)"),
    ("tags.t >= 'a'", 7, "'>=' does not apply"),
    ("status > 'a'", 7, "'>' does not apply"),
    ("params.p like 3", 14, "expected a quoted pattern, found '3'"),
    ("params.p in 'a'", 12, "expected '(' after 'in', found 'a'"),
    ("params.p in ()", 13, "expected a number or a quoted string, found ')'"),
    ("params.p in ('a',)", 17, "found ')'"),
    ("params.p in ('a' 'b')", 17, "expected ',' or ')', found 'b'"),
    ("params.p in ('a'", 16, "expected ',' or ')', found end of input"),
    ("foo.bar = 1", 0, "unknown prefix 'foo': expected metrics., params., tags. or attributes."),
    ("metrics.a = 1e999", 12, "the number 1e999 is out of range"),
    ("metrics.a = -", 12, "unexpected character '-'"),
    ("metrics.a$b = 1", 9, "unexpected character '$'"),
]


@pytest.mark.parametrize(("text", "position", "message"), ERRORS)
def test_errors_point_at_the_offending_token(text: str, position: int, message: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(text)
    error = caught.value
    assert error.position == position
    assert error.text == text
    first_line, shown, caret = str(error).split("\n")
    assert message in first_line
    assert shown == f"  {text}"
    assert caret == "  " + " " * position + "^"


def test_unknown_attribute_lists_the_valid_names() -> None:
    with pytest.raises(InvalidFilter, match=r"run_id.*start_time.*status"):
        parse_filter("attributes.colour = 'red'")


# -- order by -----------------------------------------------------------------------------------------------


def test_parse_order_by() -> None:
    assert parse_order_by(None) == []
    assert parse_order_by("") == []
    assert parse_order_by(["metrics.auc DESC", "start_time", " "]) == [
        OrderKey("metric", "auc", descending=True),
        OrderKey("attribute", "start_time", descending=False),
    ]
    assert parse_order_by("params.`a b` asc, tags.t Desc,run_name") == [
        OrderKey("param", "a b", False),
        OrderKey("tag", "t", True),
        OrderKey("attribute", "name", False),
    ]


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("metrics.a,", 10, "found end of input"),
        ("metrics.a desc desc", 15, "expected ',', 'asc', 'desc' or end of input, found 'desc'"),
        ("metrics.a up", 10, "unknown attribute 'up'"),
        ("desc", 0, "expected metrics.<key>"),
        ("attributes.colour", 11, "unknown attribute"),
        ("metrics.a > 1", 10, "found '>'"),
    ],
)
def test_order_by_errors(text: str, position: int, message: str) -> None:
    with pytest.raises(InvalidFilter, match=re.escape(message)) as caught:
        parse_order_by([text])
    assert caught.value.position == position


# -- SQL on SQLite ------------------------------------------------------------------------------------------

RUNS: dict[str, dict[str, Any]] = {
    "r1": {
        "attrs": {
            "name": "rf-small",
            "status": "FINISHED",
            "start_time": 1000,
            "end_time": 2000,
            "user": "alice",
        },
        "metric": {"auc": 0.95, "loss": 0.2, "my metric-1": 1.0},
        "param": {"model": "rf", "depth": "3", "a.b": "x", "pct": "50%", "end_time": "late"},
        "tag": {"team": "risk"},
    },
    "r2": {
        "attrs": {"name": "RF-big", "status": "FAILED", "start_time": 2000, "end_time": None, "user": "bob"},
        "metric": {"auc": 0.85, "loss": None},
        "param": {"model": "RF", "depth": "10", "pct": "500"},
        "tag": {"team": "Risk"},
    },
    "r3": {
        "attrs": {"name": "xgb", "status": "RUNNING", "start_time": 3000, "end_time": None, "user": None},
        "metric": {"auc": None},
        "param": {"model": "xgb"},
        "tag": {},
    },
    "r4": {
        "attrs": {"name": "lin", "status": "FINISHED", "start_time": 3000, "end_time": None, "user": None},
        "metric": {"auc": 0.9},
        "param": {},
        "tag": {"team": "growth"},
    },
}


def _make_db(url: str) -> Database:
    db = Database(url, auto_migrate=True)
    with db.write() as conn:
        conn.execute(insert(experiments), [{"experiment_id": "1", "name": "e", "created_time": 0}])
        for run_id, run in RUNS.items():
            attrs = dict(run["attrs"])
            attrs["user_name"] = attrs.pop("user")
            conn.execute(insert(runs), [{"run_id": run_id, "experiment_id": "1", **attrs}])
            for key, value in run["metric"].items():
                row = {"run_id": run_id, "key": key, "value": value, "step": 0, "timestamp": 0}
                conn.execute(insert(latest_metrics), [row])
            for key, value in run["param"].items():
                row = {"run_id": run_id, "key": key, "value": value, "value_json": f'"{value}"'}
                conn.execute(insert(params), [row])
            for key, value in run["tag"].items():
                conn.execute(insert(tags), [{"run_id": run_id, "key": key, "value": value}])
    return db


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """The runs of `RUNS` in a SQLite file, or in a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        database = _make_db(f"sqlite:///{tmp_path_factory.mktemp('filter')}/t.db")
        yield database
        database.dispose()
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = f"filter_{secrets.token_hex(6)}"
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = _make_db(server.url(name))
    yield database
    database.dispose()
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def matching(db: Database, expr: Expr | None) -> set[str]:
    query = select(runs.c.run_id)
    condition = compile_filter(expr)
    if condition is not None:
        query = query.where(condition)
    with db.read() as conn:
        return set(conn.execute(query).scalars())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {"r1", "r2", "r3", "r4"}),
        ("metrics.auc > 0.9", {"r1"}),
        ("metrics.auc >= 0.9", {"r1", "r4"}),
        ("metrics.auc < 1", {"r1", "r2", "r4"}),  # r3's NaN never matches
        ("metrics.auc != 0.95", {"r2", "r4"}),  # neither NaN nor ...
        ("metrics.loss < 1", {"r1"}),  # ... a missing metric matches, not even !=
        ("metrics.loss != 1", {"r1"}),
        ("metrics.auc in (0.85, 0.9)", {"r2", "r4"}),
        ("metrics.auc not in (0.85, 0.9)", {"r1"}),
        ("metrics.`my metric-1` = 1", {"r1"}),
        ("params.model = 'rf'", {"r1"}),
        ("params.model != 'rf'", {"r2", "r3"}),  # r4 has no `model`
        ("params.depth = 3", {"r1"}),
        ("params.depth = 10", {"r2"}),
        ('params."a.b" = "x"', {"r1"}),
        ("params.a.b = 'x'", {"r1"}),
        ("params.model in ('rf', 'xgb')", {"r1", "r3"}),
        ("params.model not in ('rf')", {"r2", "r3"}),
        ("params.model ilike 'RF'", {"r1", "r2"}),
        ("params.model ilike '%G%'", {"r3"}),
        ("params.model like 'x%'", {"r3"}),
        ("params.pct like '5_0'", {"r2"}),
        ("params.pct like '50\\%'", {"r1"}),  # backslash escapes % on every backend
        ("params.pct like '50%'", {"r1", "r2"}),
        ("tags.team = 'risk'", {"r1"}),
        ("tags.team != 'risk'", {"r2", "r4"}),
        ("tags.team ilike 'RISK'", {"r1", "r2"}),
        ("tags.nope = 'x' or tags.nope != 'x'", set()),
        ("status = 'FINISHED'", {"r1", "r4"}),
        ("attributes.status in ('FAILED', 'RUNNING')", {"r2", "r3"}),
        ("run_name like '%-%'", {"r1", "r2"}),
        ("name = 'lin'", {"r4"}),
        ("start_time >= 2000", {"r2", "r3", "r4"}),
        ("start_time > 2999.5", {"r3", "r4"}),
        ("start_time < 1700000000000", {"r1", "r2", "r3", "r4"}),  # beyond a 32-bit INTEGER
        ("start_time in (2000, 2999.6)", {"r2"}),  # not 3000: the float is not truncated
        ("start_time not in (2000, 3000)", {"r1"}),
        ("metrics.auc < 3000000000", {"r1", "r2", "r4"}),
        ("metrics.auc in (1, 0.85)", {"r2"}),  # an int first must not make 0.85 an INTEGER on PostgreSQL
        ("end_time > 0", {"r1"}),  # a NULL end time never matches
        ("params.end_time = 'late'", {"r1"}),  # a param, not the attribute
        ("user != 'alice'", {"r2"}),
        ("experiment_id = 1", {"r1", "r2", "r3", "r4"}),
        ("run_id in ('r1', 'r4')", {"r1", "r4"}),
        ("params.model = 'xgb' or params.model = 'rf' and metrics.auc > 0.99", {"r3"}),
        ("(params.model = 'xgb' or params.model = 'rf') and metrics.auc > 0.9", {"r1"}),
        ("params.model = 'rf' and tags.team = 'risk' and metrics.auc > 0.9", {"r1"}),
        ("tags.team = 'growth' or (params.depth = 10 and status = 'FAILED')", {"r2", "r4"}),
    ],
)
def test_filter_selects_the_expected_runs(db: Database, text: str, expected: set[str]) -> None:
    assert matching(db, parse_filter(text)) == expected


def test_like_is_case_sensitive_except_for_ascii_on_sqlite(db: Database) -> None:
    assert matching(db, parse_filter("params.model like '_f'")) == ({"r1", "r2"} if db.is_sqlite else {"r1"})
    assert matching(db, parse_filter("params.model ilike '_f'")) == {"r1", "r2"}


def ordered(db: Database, order_by: list[str] | str | None) -> list[str]:
    query = select(runs.c.run_id).order_by(*order_by_clauses(parse_order_by(order_by)))
    with db.read() as conn:
        return list(conn.execute(query).scalars())


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (None, ["r3", "r4", "r2", "r1"]),  # start_time DESC, then run_id
        (["metrics.auc"], ["r2", "r4", "r1", "r3"]),  # NaN last
        (["metrics.auc DESC"], ["r1", "r4", "r2", "r3"]),  # NaN last, descending too
        (["metrics.loss desc"], ["r1", "r3", "r4", "r2"]),  # missing and NaN last, by start_time DESC, run_id
        ("params.depth", ["r2", "r1", "r3", "r4"]),  # params sort as strings: "10" < "3"
        ("params.depth desc", ["r1", "r2", "r3", "r4"]),
        ("tags.team asc", ["r2", "r4", "r1", "r3"]),
        (["start_time"], ["r1", "r2", "r3", "r4"]),
        (["start_time", "run_id desc"], ["r1", "r2", "r4", "r3"]),
        (["end_time desc"], ["r1", "r3", "r4", "r2"]),
        (["status", "metrics.auc desc"], ["r2", "r1", "r4", "r3"]),
    ],
)
def test_order_by(db: Database, order_by: list[str] | str | None, expected: list[str]) -> None:
    assert ordered(db, order_by) == expected


def test_tie_breakers_are_appended_only_when_missing() -> None:
    assert len(order_by_clauses([])) == 2
    assert len(order_by_clauses(parse_order_by("start_time"))) == 2
    assert len(order_by_clauses(parse_order_by("run_id, start_time"))) == 2
    assert len(order_by_clauses(parse_order_by("metrics.a"))) == 3


# -- properties ---------------------------------------------------------------------------------------------

_PREFIX = {"metric": "metrics", "param": "params", "tag": "tags", "attribute": "attributes"}
_UNQUOTED = re.compile(r"[A-Za-z0-9_\-./:]+")
_ATTRS = ["run_id", "name", "status", "experiment_id", "user", "git_commit", "git_branch", "parent_run_id"]
_NUMERIC_OPS = ["=", "!=", "<", "<=", ">", ">="]
_STRING_OPS = ["=", "!=", "like", "ilike"]

numbers = st.integers(-(2**63) + 1, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)


def _quote(text: str, quote: str) -> str:
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _literal(value: float | str, quote: str) -> str:
    return _quote(value, quote) if isinstance(value, str) else repr(value)


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[str, Comparison]:
    """A random comparison as text, with the AST it must parse to."""
    kind = draw(st.sampled_from(["metric", "param", "tag", "attribute"]))
    quote = draw(st.sampled_from(["'", '"']))
    if kind == "attribute":
        numeric = draw(st.booleans())
        key = draw(st.sampled_from(["start_time", "end_time"] if numeric else _ATTRS))
        ident = draw(st.sampled_from([key, f"attributes.{key}", f"ATTRIBUTES.{key.upper()}"]))
    else:
        numeric = kind == "metric"
        key = draw(st.text(min_size=1, max_size=12))
        if _UNQUOTED.fullmatch(key) and draw(st.booleans()):
            ident = f"{_PREFIX[kind]}.{key}"
        else:
            key_quote = draw(st.sampled_from(["`", '"', "'"]))
            ident = f"{_PREFIX[kind]}.{_quote(key, key_quote)}"
    op = draw(st.sampled_from([*(_NUMERIC_OPS if numeric else _STRING_OPS), "in", "not in"]))
    if numeric:
        scalar: st.SearchStrategy[Any] = numbers
    elif op in ("like", "ilike"):  # a pattern may not end in an escape that escapes nothing
        scalar = st.text(max_size=10).filter(lambda t: (len(t) - len(t.rstrip("\\"))) % 2 == 0)
    else:
        scalar = st.text(max_size=10) | numbers
    if op in ("in", "not in"):
        values = draw(st.lists(scalar, min_size=1, max_size=4))
        rendered = "(" + ", ".join(_literal(v, quote) for v in values) + ")"
        value: Any = tuple(v if numeric else str(v) for v in values)
    else:
        raw = draw(scalar)
        rendered, value = _literal(raw, quote), raw if numeric else str(raw)
    spelled = draw(st.sampled_from([op, op.upper(), op.title()]))
    return f"{ident} {spelled} {rendered}", Comparison(kind, key, op, value)


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> tuple[str, Expr]:
    """A random filter as text, with the AST it must parse to (same-op children already flattened)."""
    if depth >= 3 or draw(st.booleans()):
        return draw(comparisons())
    op = draw(st.sampled_from(["and", "or"]))
    texts: list[str] = []
    operands: list[Expr] = []
    for text, expr in draw(st.lists(filters(depth + 1), min_size=2, max_size=3)):
        needs_parens = isinstance(expr, BoolOp) and (expr.op == "or" or op == expr.op)
        texts.append(f"({text})" if needs_parens or draw(st.booleans()) else text)
        operands.extend(expr.operands if isinstance(expr, BoolOp) and expr.op == op else [expr])
    word = draw(st.sampled_from([op, op.upper()]))
    return f" {word} ".join(texts), BoolOp(op, tuple(operands))


@given(filters())
def test_generated_filters_round_trip(case: tuple[str, Expr]) -> None:
    text, expected = case
    assert parse_filter(text) == expected
    assert compile_filter(parse_filter(text)) is not None


_FILTER_ALPHABET = st.sampled_from(
    [*"metrics.params.tags.attributes", *" ()=!<>,'\"`\\-.0123456789eE_$;%", "and", "or", "not", "in", "like"]
)


def _error_position(text: str, check: Any) -> int | None:
    """Where `check(text)` raised `InvalidFilter`, or None when it did not raise."""
    try:
        check(text)
    except InvalidFilter as error:
        return error.position
    return None


@given(st.text() | st.lists(_FILTER_ALPHABET).map("".join))
def test_garbage_parses_or_raises_invalid_filter(text: str) -> None:
    position = _error_position(text, lambda t: compile_filter(parse_filter(t)))
    assert position is None or 0 <= position <= len(text)


@given(st.text() | st.lists(_FILTER_ALPHABET).map("".join))
def test_garbage_order_by_parses_or_raises_invalid_filter(text: str) -> None:
    position = _error_position(text, lambda t: order_by_clauses(parse_order_by(t)))
    assert position is None or 0 <= position <= len(text)


# -- SQL against a reference evaluator ----------------------------------------------------------------------

_SMALL_TEXT = st.text(alphabet="rRfFxgb%_-", max_size=4)
_STORED_TEXT = st.sampled_from(["rf", "RF", "risk", "FAILED", "3", "alice"])
_NUMBERS_NEAR = st.sampled_from([-1, 0, 0.2, 0.85, 0.9, 0.95, 1, 1000, 2000, 2500, 3000])


@st.composite
def small_comparisons(draw: st.DrawFn) -> Comparison:
    """Comparisons over the keys and values of `RUNS`, so they often match something."""
    kind = draw(st.sampled_from(["metric", "param", "tag", "attribute"]))
    keys = {
        "metric": ["auc", "loss", "nope"],
        "param": ["model", "depth", "nope"],
        "tag": ["team", "nope"],
        "attribute": ["start_time", "end_time", "name", "status", "user"],
    }[kind]
    key = draw(st.sampled_from(keys))
    numeric = kind == "metric" or key in ("start_time", "end_time")
    op = draw(st.sampled_from([*(_NUMERIC_OPS if numeric else _STRING_OPS), "in", "not in"]))
    scalar: st.SearchStrategy[Any] = _NUMBERS_NEAR if numeric else _SMALL_TEXT | _STORED_TEXT
    value: Any = tuple(draw(st.lists(scalar, min_size=1, max_size=3))) if "in" in op.split() else draw(scalar)
    return Comparison(kind, key, op, value)


def small_filters() -> st.SearchStrategy[Expr]:
    return st.recursive(
        small_comparisons(),
        lambda children: st.builds(
            BoolOp, st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3).map(tuple)
        ),
        max_leaves=6,
    )


def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    translated = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(translated, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def holds(expr: Expr, run: dict[str, Any], sqlite: bool) -> bool:
    """Whether `expr` holds for `run`, computed in Python (SQLite's LIKE ignores ASCII case)."""
    if isinstance(expr, BoolOp):
        results = [holds(operand, run, sqlite) for operand in expr.operands]
        return all(results) if expr.op == "and" else any(results)
    actual = run["attrs" if expr.kind == "attribute" else expr.kind].get(expr.key)
    if actual is None or (isinstance(actual, float) and math.isnan(actual)):
        return False
    value = expr.value
    if expr.op in ("in", "not in"):
        assert isinstance(value, tuple)
        return (actual in value) == (expr.op == "in")
    if expr.op in ("like", "ilike"):
        return _like(str(value), sqlite or expr.op == "ilike").fullmatch(actual) is not None
    compare = {
        "=": lambda: actual == value,
        "!=": lambda: actual != value,
        "<": lambda: actual < value,
        "<=": lambda: actual <= value,
        ">": lambda: actual > value,
        ">=": lambda: actual >= value,
    }
    return bool(compare[expr.op]())


@given(small_filters())
def test_sql_agrees_with_a_reference_evaluator(db: Database, expr: Expr) -> None:
    expected = {run_id for run_id, run in RUNS.items() if holds(expr, run, db.is_sqlite)}
    assert matching(db, expr) == expected


def test_deep_nesting_and_dangling_escapes_are_clear_errors() -> None:
    with pytest.raises(InvalidFilter, match="nest deeper"):
        parse_filter("(" * 400 + "metrics.a > 1" + ")" * 400)
    with pytest.raises(InvalidFilter, match="unescaped backslash"):
        parse_filter("tags.t like 'a\\\\'")
    assert parse_filter("tags.t like 'a\\\\\\\\'") is not None


def test_a_filter_is_bounded_so_one_search_cannot_hold_the_database() -> None:
    from loopml.core.errors import InvalidFilter
    from loopml.tracking.filter import MAX_COMPARISONS, MAX_FILTER_CHARS

    many = " or ".join(f'params.p{i} = "a"' for i in range(MAX_COMPARISONS + 1))
    with pytest.raises(InvalidFilter, match=f"more than {MAX_COMPARISONS} comparisons"):
        parse_filter(many)
    assert parse_filter(" or ".join(f'params.p{i} = "a"' for i in range(MAX_COMPARISONS))) is not None
    with pytest.raises(InvalidFilter, match="longer than"):
        parse_filter('params.p = "' + "x" * MAX_FILTER_CHARS + '"')
    with pytest.raises(InvalidFilter, match="number literal"):
        parse_filter("metrics.auc > " + "9" * 5000)
