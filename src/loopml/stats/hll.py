"""HyperLogLog distinct-count sketch: 2**p one-byte registers, merged exactly by register-wise max.

Each distinct value is hashed to 64 bits with a stable hash (the same in every process and on every machine,
so profiles computed apart merge): strings with BLAKE2b (8-byte digest of the UTF-8 bytes), numbers with the
SplitMix64 finaliser of their float64 (or, for datetimes, int64) bit pattern, vectorised in numpy. The top `p`
bits choose a register; the register keeps the largest "position of the first 1 bit" seen in the other bits.

The estimate uses Ertl's improved estimator ("New cardinality estimation algorithms for HyperLogLog sketches",
2017), which needs no empirical bias tables and is accurate from 0 to far beyond 10**9 distinct values. Its
relative standard error is about 1.04/sqrt(2**p): 1.6% at the default p=12 (4096 registers); small sets (up to
a few hundred values) come out within a value or two of exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.encoding import int_in, pack_bytes, unpack_bytes

DEFAULT_P = 12
MIN_P, MAX_P = 4, 16

UInt64Array = npt.NDArray[np.uint64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment: keeps 0 from hashing to 0
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def hash_strings(values: Iterable[str]) -> UInt64Array:
    """Stable 64-bit hashes of strings (BLAKE2b, 8-byte digest of the UTF-8 bytes); loop over distinct values."""
    digests = b"".join(
        blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest() for value in values
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def hash_bits(bits: npt.NDArray[Any]) -> UInt64Array:
    """Stable 64-bit hashes of 64-bit patterns (SplitMix64 finaliser), vectorised; `bits` is any 8-byte dtype."""
    z = np.ascontiguousarray(bits).view(np.uint64) + _GOLDEN  # uint64 arrays wrap silently, as meant
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def hash_floats(values: npt.NDArray[np.float64]) -> UInt64Array:
    """Stable hashes of finite float64 values; -0.0 and 0.0 hash alike."""
    return hash_bits(np.asarray(values, dtype=np.float64) + 0.0)


@dataclass(frozen=True)
class HyperLogLog:
    """A distinct-count sketch. Build with `from_hashes`; combine with `merge`; read `estimate()`."""

    registers: bytes = bytes(2**DEFAULT_P)
    p: int = DEFAULT_P

    def __post_init__(self) -> None:
        if not MIN_P <= self.p <= MAX_P:
            raise InvalidInput(f"HyperLogLog precision p must be in [{MIN_P}, {MAX_P}], got {self.p}")
        if len(self.registers) != 2**self.p:
            raise InvalidInput(
                f"HyperLogLog with p={self.p} needs {2**self.p} registers, got {len(self.registers)}"
            )
        if max(self.registers, default=0) > 65 - self.p:
            raise InvalidInput(
                f"HyperLogLog register above {65 - self.p} is impossible for p={self.p}; damaged"
            )

    @classmethod
    def from_hashes(cls, hashes: UInt64Array, *, p: int = DEFAULT_P) -> HyperLogLog:
        """The sketch of a set of 64-bit hashes (duplicates are harmless)."""
        if not MIN_P <= p <= MAX_P:
            raise InvalidInput(f"HyperLogLog precision p must be in [{MIN_P}, {MAX_P}], got {p}")
        h = np.asarray(hashes, dtype=np.uint64)
        registers = np.zeros(2**p, dtype=np.uint8)
        if h.size:
            index = (h >> np.uint64(64 - p)).astype(np.intp)
            rest = h & np.uint64((1 << (64 - p)) - 1)
            registers_max = 65 - p  # rank when all 64-p remaining bits are zero
            # rank = position of the first 1 bit among the 64-p remaining bits, counted from 1, which is
            # registers_max - bit_length(rest). frexp gives bit lengths exactly for values below 2**53, so the
            # (up to 60-bit) rest is split into two 32-bit halves.
            high = (rest >> np.uint64(32)).astype(np.float64)
            low = (rest & np.uint64(0xFFFFFFFF)).astype(np.float64)
            bit_length = np.where(high > 0, np.frexp(high)[1] + 32, np.frexp(low)[1])
            rank = registers_max - bit_length
            np.maximum.at(registers, index, rank.astype(np.uint8))
        return cls(registers=registers.tobytes(), p=p)

    def merge(self, other: HyperLogLog) -> HyperLogLog:
        """The sketch of the union of both sets (exact: register-wise max)."""
        if other.p != self.p:
            raise InvalidInput(f"cannot merge HyperLogLog sketches of precision {self.p} and {other.p}")
        a = np.frombuffer(self.registers, dtype=np.uint8)
        b = np.frombuffer(other.registers, dtype=np.uint8)
        return HyperLogLog(registers=np.maximum(a, b).tobytes(), p=self.p)

    @property
    def standard_error(self) -> float:
        """Relative standard error of `estimate()`: 1.04/sqrt(2**p)."""
        return 1.04 / math.sqrt(2**self.p)

    def estimate(self) -> float:
        """Estimated number of distinct values (Ertl's improved estimator)."""
        m = 2**self.p
        q = 64 - self.p
        histogram = np.bincount(np.frombuffer(self.registers, dtype=np.uint8), minlength=q + 2).tolist()
        if histogram[0] == m:
            return 0.0
        z = m * _tau(1.0 - histogram[q + 1] / m)
        for k in range(q, 0, -1):
            z = 0.5 * (z + histogram[k])
        z += m * _sigma(histogram[0] / m)
        return float(m * m / (2.0 * math.log(2.0)) / z)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (registers packed)."""
        return {"p": self.p, "registers": pack_bytes(self.registers)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HyperLogLog:
        """Inverse of `to_dict`."""
        return cls(registers=unpack_bytes(data["registers"], what="registers"), p=int_in(data["p"], what="p"))


def _sigma(x: float) -> float:
    """sigma(x) = x + sum_k x**(2**k) * 2**(k-1), from Ertl (2017); x is the share of empty registers."""
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    """tau(x) from Ertl (2017); corrects for registers that reached the maximum rank."""
    if x in {0.0, 1.0}:
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0
