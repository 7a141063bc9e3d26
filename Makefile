# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap .venv from the lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The unmodified MLflow client (and server) that tests/server/mlflow_api drives, in its own venv: MLflow is never a
# dependency of LoopML. Pinned by requirements/mlflow.lock.
MLFLOW_VENV := .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed

.PHONY: demo test lint typecheck imports unit bench lock clean

$(STAMP): requirements/dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "LoopML needs Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

$(MLFLOW_STAMP): requirements/mlflow.lock
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/mlflow.lock
	@touch $(MLFLOW_STAMP)

demo: $(STAMP)
	$(BIN)/loopml demo

test: $(STAMP) lint typecheck imports unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP) $(MLFLOW_STAMP)
	$(BIN)/pytest --cov --cov-report=term --cov-report=xml:.coverage.xml -q

bench: $(STAMP)
	$(BIN)/python bench/tracking.py

# Re-pin every dependency (needs network to PyPI).
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --all-extras --group dev --python-version 3.11 \
		--generate-hashes -o requirements/dev.lock
	$(PYTHON) -m uv pip compile requirements/mlflow.in --python-version 3.11 --generate-hashes \
		-c bench/peers-requirements.txt -o requirements/mlflow.lock

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) .mypy_cache .pytest_cache .ruff_cache .coverage .coverage.xml
