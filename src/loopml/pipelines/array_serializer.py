"""The `npy` serializer: numpy arrays as `.npy` files, never pickled.

One module per built-in serializer, so each format reads on its own. numpy is imported only to dump or load
an array.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.pipelines.serializer import Serializer
from loopml.registry.model_hash import canonical_hash


class NpySerializer(Serializer):
    """numpy arrays as `.npy` files, never pickled: object arrays are refused."""

    name = "npy"
    version = 1
    extension = ".npy"

    def accepts(self, value: Any) -> bool:
        """True for a plain ndarray (not a subclass such as a masked array) with no Python objects in it."""
        np = sys.modules.get("numpy")
        return np is not None and type(value) is np.ndarray and not value.dtype.hasobject

    def dump(self, value: Any) -> bytes:
        """The `.npy` file, keeping the memory order (a Fortran array comes back Fortran-ordered)."""
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue()

    def load(self, data: bytes) -> Any:
        """The array; pickled content is refused."""
        import numpy as np

        if not data.startswith(b"\x93NUMPY"):  # np.load would also open a zip (.npz)
            raise InvalidInput("not an .npy artifact: the magic bytes are missing")
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InvalidInput(f"not a readable .npy artifact: {error}") from None

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of dtype, shape and the values in C order, whatever the memory layout."""
        return canonical_hash(value)
