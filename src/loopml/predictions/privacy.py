"""What the prediction log keeps of sensitive input columns: `redact` drops them, `hash` keeps a keyed digest.

- `redact`: the column is left out of the segment entirely (no value, no type): nothing to leak.
- `hash`: each non-null value becomes the keyed BLAKE3 hex digest (64 characters) of its canonical text,
  `type:value` (e.g. `str:alice`, `int:42`), so equal values still match each other (distinct counts, joins,
  drift on categories) while the value cannot be read back, nor guessed from a dictionary without the key.
  Nulls stay null.

The key is the `hash_key` given to the log; without one, a random per-project key kept in
`<home>/secrets/prediction-hash.key` (created on first use, readable by its owner only). Processes on several
hosts that share a store must be given the same `hash_key`, or their digests will not match.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

KEY_BYTES = 32  # BLAKE3's keyed mode takes exactly 32 bytes


def check_policy(redact: Collection[str], hash_columns: Collection[str], hash_key: bytes | None) -> None:
    """Refuse a column named in both sets, and a key of the wrong size."""
    both = sorted(set(redact) & set(hash_columns))
    if both:
        raise InvalidInput(f"columns {both} are both redacted and hashed; name each in one policy only")
    if hash_key is not None and len(hash_key) != KEY_BYTES:
        raise InvalidInput(f"hash_key must be exactly {KEY_BYTES} bytes, got {len(hash_key)}")


def project_key(home: Path) -> bytes:
    """The project's hashing key, created (random, owner-only) the first time it is needed."""
    path = home / "secrets" / "prediction-hash.key"
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_bytes()
        with os.fdopen(fd, "wb") as stream:
            stream.write(secrets.token_bytes(KEY_BYTES))
            stream.flush()
            os.fsync(stream.fileno())
        key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise InvalidInput(f"{path} is not a {KEY_BYTES}-byte key; delete it to make a new one")
    return key


def apply_policy(
    frame: pd.DataFrame, redact: Collection[str], hash_columns: Collection[str], key: bytes | None
) -> pd.DataFrame:
    """`frame` without the redacted columns and with the hashed ones digested (a new frame)."""
    dropped = [c for c in frame.columns if c in redact]
    out = frame.drop(columns=dropped) if dropped else frame
    hashed = [c for c in out.columns if c in hash_columns]
    if not hashed:
        return out
    if key is None:  # the log resolves the key before it applies a policy that hashes
        raise InvalidInput("hashing a column needs a key")
    out = out.copy(deep=False)
    for column in hashed:
        out[column] = [_digest(value, key) for value in out[column].to_numpy(dtype=object)]
    return out


def _digest(value: Any, key: bytes) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or _is_na(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalars hash like the Python values they stand for
    text = f"{type(value).__name__}:{value}"
    return str(blake3.blake3(text.encode("utf-8"), key=key).hexdigest())


def _is_na(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
