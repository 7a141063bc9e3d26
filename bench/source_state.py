"""Which LoopML source a benchmark measured: commit, uncommitted changes under src/, and a digest of src/."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import blake3

REPO = Path(__file__).resolve().parent.parent


def source_state() -> dict[str, Any]:
    """The LoopML commit measured, whether src/ had uncommitted changes, and a digest of src/ as it is."""

    def git(*cmd: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    changed = git("status", "--porcelain", "--", "src")
    hasher = blake3.blake3()
    for file in sorted((REPO / "src").rglob("*.py")):
        hasher.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes() + b"\0")
    return {
        "commit": git("rev-parse", "HEAD"),
        "src_clean": changed == "",
        "src_changed_files": changed.splitlines() if changed else [],
        "src_tree_blake3": hasher.hexdigest()[
            :16
        ],  # equal at start and end: src/ did not move during the run
    }
