"""HyperLogLog: error within the stated bound, near-exact small sets, exact merges, stable hashes."""

from __future__ import annotations

import numpy as np
import pytest

from loopml.core.errors import InvalidInput
from loopml.stats.hll import HyperLogLog, hash_floats, hash_strings


def test_hashes_are_pinned() -> None:
    # Profiles computed in other processes and on other machines must merge: these values may never change.
    assert hash_strings(["a", "loopml"]).tolist() == [3405396810240292928, 4255842794382624531]
    assert hash_floats(np.array([1.0, 0.0, -0.0])).tolist() == [
        9860564707913756141,
        16294208416658607535,
        16294208416658607535,
    ]


@pytest.mark.parametrize("kind", ["strings", "floats"])
def test_100k_distinct_within_three_standard_errors(kind: str) -> None:
    n = 100_000
    hashes = (
        hash_strings(f"user-{i}" for i in range(n)) if kind == "strings" else hash_floats(np.arange(n) * 0.1)
    )
    sketch = HyperLogLog.from_hashes(hashes)
    assert sketch.standard_error == pytest.approx(1.04 / 64)
    assert abs(sketch.estimate() - n) <= 3 * sketch.standard_error * n


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 10, 20])
def test_tiny_sets_are_exact_when_rounded(n: int) -> None:
    assert round(HyperLogLog.from_hashes(hash_strings(f"v{i}" for i in range(n))).estimate()) == n


@pytest.mark.parametrize("n", [50, 100, 300, 1000, 3000])
def test_small_sets_are_within_three_percent(n: int) -> None:
    estimate = HyperLogLog.from_hashes(hash_strings(f"v{i}" for i in range(n))).estimate()
    assert abs(estimate - n) <= 0.03 * n


def test_duplicates_do_not_count_and_merge_is_the_union() -> None:
    a = HyperLogLog.from_hashes(hash_strings([f"x{i}" for i in range(5000)] * 3))
    b = HyperLogLog.from_hashes(hash_strings(f"x{i}" for i in range(2500, 9000)))
    union = HyperLogLog.from_hashes(hash_strings(f"x{i}" for i in range(9000)))
    assert a.merge(b) == union == b.merge(a)
    assert a.merge(a) == a


def test_round_trip_and_checks() -> None:
    sketch = HyperLogLog.from_hashes(hash_strings(f"x{i}" for i in range(777)))
    assert HyperLogLog.from_dict(sketch.to_dict()) == sketch
    with pytest.raises(InvalidInput, match="precision"):
        HyperLogLog.from_hashes(hash_strings(["a"]), p=20)
    with pytest.raises(InvalidInput, match="precision 12 and 10"):
        sketch.merge(HyperLogLog.from_hashes(hash_strings(["a"]), p=10))
    with pytest.raises(InvalidInput, match="registers"):
        HyperLogLog(registers=b"\x00" * 10)


@pytest.mark.parametrize("p", [4, 8, 12, 16])
def test_other_precisions(p: int) -> None:
    n = 20_000
    sketch = HyperLogLog.from_hashes(hash_strings(f"k{i}" for i in range(n)), p=p)
    assert abs(sketch.estimate() - n) <= 4 * sketch.standard_error * n
