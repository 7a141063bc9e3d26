"""Resource hints of a task: `@loopml.step(resources={"cpu": 2, "gpu": 1, "memory": "4GB"})`.

A cluster executor (Ray) reserves them for the task and places it on a node that has them; the local
executors run one task per worker and only check the hints are well formed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.core.errors import InvalidInput

_SIZE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_CUSTOM = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
_LIMIT = 1_000_000  # no task asks for a million CPUs or GPUs: a larger number is a typo


@dataclass(frozen=True)
class Resources:
    """What one task needs: CPUs (default 1), GPUs, memory in bytes, and custom cluster resources."""

    cpu: float = 1.0
    gpu: float = 0.0
    memory_bytes: int | None = None
    custom: Mapping[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """`2 CPU, 1 GPU, 4.0 GB memory` for messages."""
        parts = [f"{self.cpu:g} CPU"]
        if self.gpu:
            parts.append(f"{self.gpu:g} GPU")
        if self.memory_bytes is not None:
            parts.append(f"{self.memory_bytes / 1e9:.1f} GB memory")
        parts += [f"{amount:g} {name}" for name, amount in self.custom.items()]
        return ", ".join(parts)


def parse_resources(hints: Mapping[str, Any] | None, *, where: str) -> Resources:
    """The `Resources` named by `hints` (keys cpu, gpu, memory, or a custom resource name); a bad one raises."""
    if hints is None:
        return Resources()
    if not isinstance(hints, Mapping):
        raise InvalidInput(f"{where}: resources must be a dict like {{'cpu': 2, 'memory': '4GB'}}")
    cpu, gpu, memory, custom = 1.0, 0.0, None, {}
    for key, value in hints.items():
        if not isinstance(key, str):
            raise InvalidInput(f"{where}: resource names must be strings, got {key!r}")
        name = key.lower()
        if name == "memory":
            memory = _size(value, where)
        elif name in ("cpu", "gpu"):
            amount = _amount(key, value, where)
            if name == "cpu":
                cpu = amount
            else:
                gpu = amount
        elif _CUSTOM.match(key):
            custom[key] = _amount(key, value, where)
        else:
            raise InvalidInput(f"{where}: {key!r} is not a resource name (cpu, gpu, memory or a custom name)")
    return Resources(cpu=cpu, gpu=gpu, memory_bytes=memory, custom=custom)


def _amount(key: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{where}: resource {key!r} must be a number, got {value!r}")
    if not 0 <= value <= _LIMIT:
        raise InvalidInput(f"{where}: resource {key!r} must be between 0 and {_LIMIT}, got {value!r}")
    if 1 < value != int(value):
        raise InvalidInput(f"{where}: resource {key!r} above 1 must be a whole number, got {value!r}")
    return float(value)


def _size(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        unit = (match["unit"] or "B").upper()
        size = int(float(match["number"]) * _UNITS[unit])
    else:
        raise InvalidInput(f"{where}: memory must be bytes or a size like '4GB' or '512MiB', got {value!r}")
    if not 0 < size <= 2**50:
        raise InvalidInput(f"{where}: memory must be between 1 byte and 1 PiB, got {value!r}")
    return size
