"""A step output during a pipeline run: its stored reference, and its value, read only when needed."""

from __future__ import annotations

from typing import Any

from loopml.pipelines.records import OutputRef
from loopml.pipelines.serializers import deserialize
from loopml.tracking.tracker import Tracker


class Output:
    """A step output during a run: its stored reference, and its value once someone needs it."""

    def __init__(self, ref: OutputRef, tracker: Tracker, value: Any = None, *, loaded: bool = False) -> None:
        self.ref = ref
        self._tracker = tracker
        self._value = value
        self._loaded = loaded

    def value(self) -> Any:
        """The output's value, read from the blob store on first use."""
        if not self._loaded:
            data = self._tracker.blobs.get_bytes(self.ref.digest)
            self._value = deserialize(data, self.ref.serializer)
            self._loaded = True
        return self._value


def artifact_path(name: str, serializer: str) -> str:
    """Where an output is listed among its step run's artifacts: `outputs/NAME.EXT`."""
    return f"outputs/{name}{_extension(serializer)}"


def _extension(serializer: str) -> str:
    name = serializer.split("@", 1)[0]
    return {"json": ".json", "parquet": ".parquet", "npy": ".npy", "skops": ".skops"}.get(name, f".{name}")
