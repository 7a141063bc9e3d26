#!/usr/bin/env bash
# Create .venv-peers (repo root, gitignored): the MLflow side of `bench/tracking.py` and the DVC side of
# `bench/data.py`; and .venv-peers/prefect, a venv of its own inside it: the Prefect side of `bench/pipelines.py`.
#
# MLflow and DVC must never be dependencies of LoopML, so they live in their own venv: bench/tracking.py runs
# bench/peers/tracking_mlflow.py with .venv-peers/bin/python, and bench/data.py runs .venv-peers/bin/dvc, as
# subprocesses. Versions are pinned in bench/peers-requirements.txt (mlflow 3.17.2, pandas 2.3.3,
# psutil 7.2.2, dvc 3.67.1 with dvc-s3 3.3.0, and their dependencies, as
# `pip install mlflow "pandas<3" psutil "dvc[s3]"` resolved them on 2026-11-26).
#
# Prefect has its own venv because it cannot share those pins. prefect 3.9.1 needs fastapi<0.151, but the
# MLflow pins hold fastapi 0.165.0. prefect 3.8.8, the newest that pip resolves under those pins, fails at its
# first flow with that fastapi (`Body() got an unexpected keyword argument 'min_items'`). Prefect is pinned to
# the version measured in shared/research/orchestration.md. Its dependencies resolve at install time (fastapi
# 0.150.0, SQLAlchemy 2.1.9 and pydantic 2.14.4 on 2026-11-26).
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

if [[ ! -x "$venv/prefect/bin/python" ]]; then
    "$python" -m venv "$venv/prefect"
fi
"$venv/prefect/bin/python" -m pip install --quiet "prefect==3.9.1"
"$venv/prefect/bin/python" - <<'EOF'
from importlib import metadata

print("prefect venv ready:", ", ".join(f"{d} {metadata.version(d)}" for d in ("prefect", "fastapi", "sqlalchemy")))
EOF
