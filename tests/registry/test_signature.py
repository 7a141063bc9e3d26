"""Signatures: inference from training data, JSON round trip, check/validate on requests, records to frames."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import timeit
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.core.errors import InvalidInput
from loopml.registry.signature import (
    ColumnSpec,
    Signature,
    SignatureMismatch,
    Violation,
    check,
    frame_from_records,
    infer_signature,
    validate,
)


def training_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, 40, 50, 60],
            "income": [1.5, np.nan, 3.0, 4.5],
            "member": [True, False, True, True],
            "size": pd.Categorical(["S", "M", "L", "M"], categories=["S", "M", "L"]),
            "city": ["b", "a", None, "a"],
            "when": pd.to_datetime(pd.Series(["2024-01-01", "2024-01-02", "2024-01-03", None])),
            "visits": pd.array([1, None, 3, 4], dtype="Int64"),
        }
    )


@pytest.fixture
def signature() -> Signature:
    return infer_signature(training_frame())


def test_infer_gives_one_spec_per_column_with_type_nulls_levels_and_range(signature: Signature) -> None:
    assert signature.inputs == (
        ColumnSpec("age", "integer", False, minimum=30, maximum=60),
        ColumnSpec("income", "float", True, minimum=1.5, maximum=4.5),
        ColumnSpec("member", "boolean", False),
        ColumnSpec("size", "category", False, levels=("S", "M", "L")),  # dtype order: the codes the model saw
        ColumnSpec("city", "string", True, levels=("a", "b")),
        ColumnSpec("when", "datetime", True),
        ColumnSpec("visits", "integer", True, minimum=1, maximum=4),
    )
    assert signature.outputs == ()
    assert signature.column_names == ["age", "income", "member", "size", "city", "when", "visits"]


def test_infer_keeps_levels_of_strings_only_up_to_fifty_distinct_values() -> None:
    frame = pd.DataFrame({"few": [f"v{i % 50}" for i in range(60)], "many": [f"v{i}" for i in range(60)]})
    few, many = infer_signature(frame).inputs
    assert few.levels is not None
    assert len(few.levels) == 50
    assert list(few.levels) == sorted(few.levels)
    assert many == ColumnSpec("many", "string", False, levels=None)


def test_infer_reads_object_columns_by_their_values() -> None:
    frame = pd.DataFrame(
        {
            "ints": pd.Series([1, None, 3], dtype=object),
            "flags": pd.Series([True, None, False], dtype=object),
            "words": pd.Series(["x", "y", None], dtype=object),
        }
    )
    assert [(s.type, s.nullable) for s in infer_signature(frame).inputs] == [
        ("integer", True),
        ("boolean", True),
        ("string", True),
    ]


def test_a_2d_array_gets_f_names_and_other_shapes_are_refused() -> None:
    sig = infer_signature(np.array([[1.0, 2, 3], [4, 5, 6]]))
    assert sig.column_names == ["f0", "f1", "f2"]
    assert {s.type for s in sig.inputs} == {"float"}
    with pytest.raises(InvalidInput, match=r"must be 2-D .* got shape \(3,\)"):
        infer_signature(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(InvalidInput, match="empty"):
        infer_signature(np.empty((0, 3)))
    with pytest.raises(InvalidInput, match="empty"):
        infer_signature(pd.DataFrame({"a": []}))


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (pd.DataFrame({"a": pd.Series([1, "x"], dtype=object)}), r"mixes values of types \['int', 'str'\]"),
        (pd.DataFrame({"a": pd.to_timedelta([1, 2], unit="s")}), "cannot describe"),
        (pd.DataFrame({0: [1, 2]}), "distinct strings"),
        ([[1, 2]], "DataFrame or a 2-D numpy array"),
    ],
)
def test_samples_a_signature_cannot_describe_are_refused(sample: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        infer_signature(sample)


def test_outputs_come_from_predictions_and_per_class_probabilities() -> None:
    sample = np.zeros((3, 2))
    sig = infer_signature(
        sample,
        predictions=["no", "yes", "no"],
        probabilities=[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
        classes=["no", "yes"],
    )
    assert sig.outputs == (
        ColumnSpec("prediction", "string", False, levels=("no", "yes")),
        ColumnSpec("proba_no", "float", False, minimum=0.2, maximum=0.9),
        ColumnSpec("proba_yes", "float", False, minimum=0.1, maximum=0.8),
    )
    regression = infer_signature(sample, predictions=np.array([[1], [2], [3]]))
    assert regression.outputs == (ColumnSpec("prediction", "integer", False, minimum=1, maximum=3),)
    default = infer_signature(sample, probabilities=np.full((3, 3), 1 / 3))
    assert [s.name for s in default.outputs] == ["proba_0", "proba_1", "proba_2"]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"predictions": [1, 2]}, "2 predictions for 3 sample rows"),
        ({"predictions": np.zeros((3, 2))}, "must be 1-D"),
        ({"probabilities": [0.1, 0.2, 0.3]}, r"shape \(3, classes\)"),
        ({"probabilities": np.zeros((3, 2)), "classes": ["a"]}, "1 classes given for 2 probability columns"),
        ({"probabilities": [["a", "b"]] * 3}, "must be numbers"),
        ({"classes": ["a", "b"]}, "pass probabilities too"),
    ],
)
def test_malformed_outputs_are_refused(outputs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        infer_signature(np.zeros((3, 2)), **outputs)


def test_to_dict_is_json_and_round_trips(signature: Signature) -> None:
    full = Signature(
        inputs=signature.inputs, outputs=(ColumnSpec("prediction", "float", False, minimum=0, maximum=1),)
    )
    data = json.loads(json.dumps(full.to_dict()))
    assert data["inputs"][0] == {
        "name": "age",
        "type": "integer",
        "nullable": False,
        "minimum": 30.0,
        "maximum": 60.0,
    }
    assert data["inputs"][3] == {
        "name": "size",
        "type": "category",
        "nullable": False,
        "levels": ["S", "M", "L"],
    }
    assert Signature.from_dict(data) == full


COLUMN = {"name": "a", "type": "float", "nullable": False}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([COLUMN], "must be an object with 'inputs'"),
        ({"outputs": []}, "must be an object with 'inputs'"),
        ({"inputs": [COLUMN], "extra": 1}, r"unknown signature keys \['extra'\]"),
        ({"inputs": COLUMN}, "inputs must be a list of columns"),
        ({"inputs": []}, "at least one input column"),
        ({"inputs": ["a"]}, r"inputs\[0\]: a column must be an object"),
        ({"inputs": [{"name": "a", "type": "float"}]}, r"inputs\[0\]: a column needs nullable"),
        ({"inputs": [{**COLUMN, "colour": 1}]}, r"unknown column keys \['colour'\]"),
        ({"inputs": [{**COLUMN, "type": "int"}]}, "type must be one of integer, float"),
        ({"inputs": [{**COLUMN, "name": ""}]}, "non-empty string"),
        ({"inputs": [{**COLUMN, "nullable": "no"}]}, "nullable must be true or false"),
        ({"inputs": [{**COLUMN, "levels": ["x"]}]}, "a float column has no levels"),
        ({"inputs": [{**COLUMN, "type": "string", "levels": "xy"}]}, "levels must be a list of strings"),
        ({"inputs": [{**COLUMN, "type": "string", "levels": ["x", 1]}]}, "levels must be a list of strings"),
        ({"inputs": [{**COLUMN, "type": "string", "levels": ["x", "x"]}]}, "levels must be distinct"),
        ({"inputs": [{**COLUMN, "type": "category"}]}, "needs its levels"),
        ({"inputs": [{**COLUMN, "minimum": "0"}]}, "minimum must be a finite number"),
        ({"inputs": [{**COLUMN, "maximum": float("inf")}]}, "maximum must be a finite number"),
        ({"inputs": [{**COLUMN, "minimum": 2, "maximum": 1}]}, "minimum 2.0 is above maximum 1.0"),
        ({"inputs": [{**COLUMN, "type": "boolean", "minimum": 0}]}, "a boolean column has no minimum"),
        ({"inputs": [COLUMN, COLUMN]}, r"inputs name \['a'\] more than once"),
        ({"inputs": [COLUMN], "outputs": [7]}, r"outputs\[0\]: a column must be an object"),
    ],
)
def test_from_dict_refuses_malformed_input_saying_where(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Signature.from_dict(data)


def request(**columns: Any) -> pd.DataFrame:
    """A request frame: the training frame's first row repeated four times, with some columns replaced."""
    frame = training_frame().iloc[[0, 0, 0, 0]].reset_index(drop=True)
    for name, values in columns.items():
        if values is None:
            frame = frame.drop(columns=name)
        else:
            frame[name] = values
    return frame


def test_a_frame_like_training_has_no_violations(signature: Signature) -> None:
    assert check(signature, training_frame()) == []
    assert check(signature, training_frame(), strict_levels=True, strict_ranges=True) == []


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"age": None}, Violation("age", "missing", "column is absent; the model needs it (integer)")),
        (
            {"city": None},
            Violation("city", "missing", "column is absent; the model needs it (string, nullable)"),
        ),
        ({"extra": 1}, Violation("extra", "unexpected", "column is not in the signature; drop it")),
        (
            {"age": [30.0, 2.5, 40.0, 7.5]},
            Violation(
                "age", "type", "expected integer; 2 of 4 rows are not integers (first: row 1, value 2.5)"
            ),
        ),
        (
            {"age": [True, False, True, True]},
            Violation(
                "age", "type", "expected integer; 4 of 4 rows are not integers (first: row 0, value True)"
            ),
        ),
        (
            {"income": pd.Series([1.0, "abc", None, "x"], dtype=object)},
            Violation(
                "income", "type", "expected float; 2 of 4 rows are not numbers (first: row 1, value 'abc')"
            ),
        ),
        (
            {"member": [1, 0, 1, 1]},
            Violation(
                "member", "type", "expected boolean; 4 of 4 rows are not booleans (first: row 0, value 1)"
            ),
        ),
        (
            {"city": [1.5, 2.5, None, None]},
            Violation(
                "city", "type", "expected string; 2 of 4 rows are not strings (first: row 0, value 1.5)"
            ),
        ),
        (
            {"size": [1.5, 2.5, 3.5, 4.5]},
            Violation(
                "size",
                "type",
                "expected category; 4 of 4 rows are not strings or integers (first: row 0, value 1.5)",
            ),
        ),
        (
            {"when": ["2024-05-01", "tomorrow", None, "2024-05-02T10:00:00"]},
            Violation(
                "when",
                "type",
                "expected datetime; 1 of 4 rows are not ISO 8601 dates or times (first: row 1, value 'tomorrow')",
            ),
        ),
        (
            {"age": [30.0, np.nan, 40.0, np.nan]},
            Violation("age", "null", "2 of 4 rows are null; training saw none (first: row 1)"),
        ),
    ],
)
def test_check_reports_each_problem_with_counts_and_the_first_bad_row(
    signature: Signature, columns: dict[str, Any], expected: Violation
) -> None:
    assert check(signature, request(**columns)) == [expected]


def test_a_repeated_column_is_unexpected(signature: Signature) -> None:
    frame = pd.concat([request(), request()[["age"]]], axis=1)
    assert check(signature, frame) == [Violation("age", "unexpected", "column appears 2 times; send it once")]


def test_unseen_levels_and_out_of_range_numbers_are_violations_only_when_strict(signature: Signature) -> None:
    frame = request(age=[30, 61, 29, 45], size=["S", "XL", "M", "XS"], city=["a", "a", "zzz", None])
    assert check(signature, frame) == []
    assert check(signature, frame, strict_ranges=True) == [
        Violation(
            "age",
            "out_of_range",
            "2 of 4 rows are outside the training range [30, 60] (first: row 1, value 61)",
        )
    ]
    detail = "2 of 4 rows hold levels not among the 3 seen in training (first: row 1, value 'XL')"
    assert check(signature, frame, strict_levels=True) == [
        Violation("size", "unseen_level", detail),
        Violation(
            "city",
            "unseen_level",
            "1 of 4 rows hold levels not among the 2 seen in training (first: row 2, value 'zzz')",
        ),
    ]
    with pytest.raises(SignatureMismatch):
        validate(signature, frame, strict_levels=True)


def test_validate_orders_columns_and_converts_to_training_dtypes(signature: Signature) -> None:
    frame = pd.DataFrame(
        {
            "visits": [2, None],
            "when": ["2024-05-01T10:00:00", None],
            "city": ["a", "new"],
            "size": ["L", "XXL"],  # a level training never saw becomes missing without strict_levels
            "member": [False, True],
            "income": [3, 4],  # integers in a float column
            "age": [31.0, 45.0],  # JSON clients send 3.0
        }
    )
    original = frame.copy()
    out = validate(signature, frame)
    assert out.columns.tolist() == signature.column_names
    assert out["age"].dtype == np.int64
    assert out["age"].tolist() == [31, 45]
    assert out["income"].dtype == np.float64
    assert out["size"].dtype == training_frame()["size"].dtype
    assert out["size"].cat.codes.tolist() == [2, -1]
    assert out["when"].dtype.kind == "M"
    assert out["when"].iloc[0] == pd.Timestamp("2024-05-01 10:00")
    assert str(out["visits"].dtype) == "Int64"
    assert out["visits"].isna().tolist() == [False, True]
    pd.testing.assert_frame_equal(frame, original)


def test_columns_with_no_values_convert_whatever_dtype_json_gave_them(signature: Signature) -> None:
    out = validate(
        signature, request(income=[np.nan] * 4, city=[np.nan] * 4, when=[None] * 4, visits=[None] * 4)
    )
    assert out["income"].dtype == np.float64
    assert out["when"].dtype.kind == "M"
    assert str(out["visits"].dtype) == "Int64"
    assert out[["income", "city", "when", "visits"]].isna().all().all()
    assert check(signature, out) == []


def test_datetimes_with_mixed_offsets_are_a_type_violation_not_a_crash(signature: Signature) -> None:
    frame = request(when=["2024-01-01T00:00:00+01:00", "2024-01-01T00:00:00+02:00", None, None])
    [violation] = check(signature, frame)
    assert (violation.column, violation.problem) == ("when", "type")
    assert violation.detail.startswith("expected datetime; the values cannot be read as one (")


def test_validate_leaves_a_frame_that_already_matches_alone(signature: Signature) -> None:
    frame = training_frame()
    pd.testing.assert_frame_equal(validate(signature, frame), frame)
    shuffled = frame[frame.columns[::-1]]
    pd.testing.assert_frame_equal(validate(signature, shuffled), frame)


def test_mismatch_is_invalid_input_listing_violations_and_truncating() -> None:
    sig = Signature(inputs=tuple(ColumnSpec(f"c{i}", "float", False) for i in range(13)))
    with pytest.raises(SignatureMismatch) as caught:
        validate(sig, pd.DataFrame({"c0": ["x"]}))
    error = caught.value
    assert isinstance(error, InvalidInput)
    assert error.code == "signature_mismatch"
    assert error.http_status == 400
    assert len(error.violations) == 13
    assert error.message.startswith("input does not match the model signature (13 problems): ")
    assert (
        "column 'c0' (type): expected float; 1 of 1 rows are not numbers (first: row 0, value 'x')"
        in error.message
    )
    assert "column 'c9' (missing)" in error.message
    assert "column 'c10'" not in error.message
    assert "; and 3 more; " in error.message
    assert "\n" not in error.message
    assert pickle.loads(pickle.dumps(error)).violations == error.violations


def test_check_refuses_what_is_not_a_frame(signature: Signature) -> None:
    with pytest.raises(InvalidInput, match="expected a pandas DataFrame, got list"):
        check(signature, [{"age": 1}])  # type: ignore[arg-type]


def test_frame_from_records_puts_signature_columns_first_and_leaves_judging_to_validate(
    signature: Signature,
) -> None:
    records = [
        {
            "extra": 1,
            "age": 30,
            "income": 2.0,
            "member": True,
            "size": "S",
            "when": "2024-01-01",
            "visits": 1,
        },
        {"age": 31, "income": 3, "member": False, "size": "M", "city": "a", "when": None, "visits": None},
    ]
    frame = frame_from_records(signature, records)
    assert frame.columns.tolist() == [*signature.column_names, "extra"]
    assert frame["city"].isna().tolist() == [True, False]
    assert check(signature, frame) == [
        Violation("extra", "unexpected", "column is not in the signature; drop it")
    ]
    frame = frame_from_records(signature, [{"age": 30}])
    assert frame.columns.tolist() == ["age"]
    assert {v.problem for v in check(signature, frame)} == {"missing"}
    assert frame_from_records(signature, []).columns.tolist() == signature.column_names


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"age": 1}, "records must be a list of objects, one per row; got dict"),
        ("[]", "got str"),
        ([{"age": 1}, [1, 2]], "record 1 is a list, not an object"),
    ],
)
def test_frame_from_records_refuses_what_is_not_a_list_of_objects(records: Any, message: str) -> None:
    sig = Signature(inputs=(ColumnSpec("age", "integer", False),))
    with pytest.raises(InvalidInput, match=message):
        frame_from_records(sig, records)


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["2024-01-01", "2024-01-01T00:00:00+05:00", "S", "M"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=150)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["age", "income", "member", "size", "city", "when", "visits", "x"]), JSON_VALUES
        ),
        max_size=4,
    ),
    st.booleans(),
)
def test_validate_on_any_json_raises_nothing_but_signature_mismatch(
    records: list[dict[str, Any]], strict: bool
) -> None:
    sig = infer_signature(training_frame())
    frame = frame_from_records(sig, records)
    if check(sig, frame, strict_levels=strict, strict_ranges=strict):
        with pytest.raises(SignatureMismatch):
            validate(sig, frame, strict_levels=strict, strict_ranges=strict)
    else:
        assert (
            validate(sig, frame, strict_levels=strict, strict_ranges=strict).columns.tolist()
            == sig.column_names
        )


def test_importing_the_module_does_not_import_pandas() -> None:
    code = "import sys, loopml.registry.signature; print('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_validate_timing_on_ten_rows_by_thirty_columns(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)

    def frame(rows: int) -> pd.DataFrame:
        columns: dict[str, Any] = {f"x{i}": rng.normal(size=rows) for i in range(20)}
        columns |= {f"n{i}": rng.integers(0, 9, size=rows) for i in range(5)}
        columns |= {f"c{i}": pd.Categorical(rng.choice(["a", "b", "c"], size=rows)) for i in range(5)}
        return pd.DataFrame(columns)

    training = frame(200)
    sig = infer_signature(training)
    records: list[dict[str, Any]] = [
        {str(key): value for key, value in row.items()}
        for row in training.head(10).astype(object).to_dict("records")
    ]
    for (
        record
    ) in records:  # as a JSON client sends them: some floats as ints, ints as 3.0, categories as strings
        record |= {"x0": int(record["x0"]), "n0": float(record["n0"])}
        record |= {f"c{i}": str(record[f"c{i}"]) for i in range(5)}
    from_json = frame_from_records(sig, records)
    ready = validate(sig, from_json)

    def micros(call: Any) -> float:
        return min(timeit.repeat(call, number=200, repeat=5)) / 200 * 1e6

    timings = {
        "frame_from_records": micros(lambda: frame_from_records(sig, records)),
        "validate (JSON frame, 7 columns converted)": micros(lambda: validate(sig, from_json)),
        "validate (dtypes already match)": micros(lambda: validate(sig, ready)),
        "validate strict_levels+strict_ranges": micros(
            lambda: validate(sig, ready, strict_levels=True, strict_ranges=True)
        ),
    }
    with capsys.disabled():
        for name, value in timings.items():
            print(f"\n[signature timing, 10 rows x 30 columns] {name}: {value:.0f} us", end="")
        print()


@given(
    columns=st.lists(
        st.tuples(st.sampled_from(["float", "integer"]), st.booleans(), st.sampled_from([None, -1.0, 0.0])),
        min_size=1,
        max_size=4,
    ),
    cells=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.integers(-(2**64), 2**64).map(float),
            st.sampled_from([0.0, 1.0, 2.5, -3.0]),
        ),
        min_size=16,
        max_size=16,
    ),
    rows=st.integers(1, 4),
    strict=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_the_float_block_fast_path_answers_as_the_column_by_column_path(
    columns: list[tuple[str, bool, float | None]], cells: list[float], rows: int, strict: bool
) -> None:
    import pandas as pd

    from loopml.registry import signature_check

    specs = tuple(
        ColumnSpec(f"c{i}", kind, nullable, None, low, None)
        for i, (kind, nullable, low) in enumerate(columns)
    )
    signature = Signature(specs)
    frame = pd.DataFrame(
        np.array(cells[: rows * len(specs)] + [0.0] * max(0, rows * len(specs) - len(cells))).reshape(
            rows, len(specs)
        ),
        columns=signature.column_names,
    )

    def outcome(fast: bool) -> Any:
        original = signature_check._float_block
        if not fast:
            signature_check._float_block = lambda *a, **k: None  # type: ignore[assignment]
        try:
            out = signature_check.validate(signature, frame, strict_ranges=strict)
            return (
                "ok",
                [str(d) for d in out.dtypes],
                out.astype(object).where(out.notna(), None).values.tolist(),
            )
        except SignatureMismatch as error:
            return ("refused", sorted((v.column, v.problem) for v in error.violations))
        finally:
            signature_check._float_block = original  # type: ignore[assignment]

    assert outcome(fast=True) == outcome(fast=False)


def test_a_clean_float_block_takes_the_fast_path_and_integers_come_back_as_integers() -> None:
    from loopml.registry import signature_check

    signature = Signature(
        (ColumnSpec("x", "float", False), ColumnSpec("n", "integer", False, None, 0.0, 9.0))
    )
    frame = pd.DataFrame(np.array([[1.5, 2.0], [3.0, 4.0]]), columns=["x", "n"])
    fast = signature_check._float_block(signature, frame, strict_ranges=True)
    assert fast is not None
    assert fast["n"].tolist() == [2, 4]
    assert fast.dtypes.tolist() == [np.float64, np.int64]
    assert frame.dtypes.tolist() == [np.float64, np.float64]  # the caller's frame is untouched
    frame.iloc[0, 1] = 10.0  # out of range: the general path reports it
    assert signature_check._float_block(signature, frame, strict_ranges=True) is None
    with pytest.raises(SignatureMismatch, match="out_of_range"):
        signature_check.validate(signature, frame, strict_ranges=True)
