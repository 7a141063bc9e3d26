#!/usr/bin/env bash
# Create .venv-peers (repo root, gitignored): the MLflow side of `bench/tracking.py` and the DVC side of
# `bench/data.py`.
#
# MLflow and DVC must never be dependencies of LoopML, so they live in their own venv: bench/tracking.py runs
# bench/peers/tracking_mlflow.py with .venv-peers/bin/python, and bench/data.py runs .venv-peers/bin/dvc, as
# subprocesses. Versions are pinned in bench/peers-requirements.txt (mlflow 3.17.2, pandas 2.3.3,
# psutil 7.2.2, dvc 3.67.1 with dvc-s3 3.3.0, and their dependencies, as
# `pip install mlflow "pandas<3" psutil "dvc[s3]"` resolved them on 2026-11-26).
#
#   bash bench/setup_peers.sh            # create (or complete) .venv-peers
#   FRESH=1 bash bench/setup_peers.sh    # delete and re-create it
#   PYTHON=python3.12 bash bench/setup_peers.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv-peers"
requirements="$repo/bench/peers-requirements.txt"
python="${PYTHON:-python3}"

if [[ "${FRESH:-0}" == "1" && -d "$venv" ]]; then
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet -r "$requirements"
"$venv/bin/python" - <<'EOF'
from importlib import metadata

print("peers venv ready:", ", ".join(f"{d} {metadata.version(d)}" for d in ("mlflow", "pandas", "psutil", "sqlalchemy", "dvc", "dvc-s3")))
EOF
