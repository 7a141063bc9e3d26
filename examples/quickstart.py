"""The `make demo` walk-through: a small tracked training on built-in data, then where to look.

Versions the bundled breast-cancer data set (schema and profile included), trains three scikit-learn
models on it in a throwaway project folder (`demo-project/`), logging params, per-epoch metrics and the model
(skops, never pickle) to LoopML, then searches and compares the runs and shows which runs read the data. The full closed loop (retrain on drift, gate, roll out) replaces this demo
once those parts exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import loopml

PROJECT = Path(os.environ.get("LOOPML_DEMO_DIR", "demo-project")).resolve()


def train(alpha: float, epochs: int, dataset: str) -> str:
    with loopml.start_run(experiment="breast-cancer", name=f"sgd-alpha-{alpha:g}") as run:
        run.log_params(
            {"model": {"kind": "SGDClassifier", "loss": "log_loss", "alpha": alpha}, "epochs": epochs}
        )
        frame = loopml.datasets.load(dataset)  # recorded as this run's input: run -> dataset version
        X, y = frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        model = SGDClassifier(loss="log_loss", alpha=alpha, random_state=0)
        classes = np.unique(y_train)
        for epoch in range(epochs):
            model.partial_fit(X_train, y_train, classes=classes)
            proba = model.predict_proba(X_test)[:, 1]
            run.log_metrics(
                {"val_loss": log_loss(y_test, proba), "val_auc": roc_auc_score(y_test, proba)}, step=epoch
            )
        import skops.io

        run.log_bytes(skops.io.dumps(model), "model/model.skops")
        return run.run_id


def main() -> None:
    shutil.rmtree(PROJECT, ignore_errors=True)
    PROJECT.mkdir(parents=True)
    os.chdir(PROJECT)
    loopml.configure(project_dir=PROJECT)
    frame = load_breast_cancer(as_frame=True).frame
    version = loopml.datasets.add("breast_cancer", frame, message="sklearn's bundled copy").version
    print(f"Versioned {version.ref}: {version.row_count} rows x {len(version.schema or [])} columns\n")

    started = time.perf_counter()
    run_ids = [train(alpha, 30, version.ref) for alpha in (1e-4, 1e-2, 1.0)]
    print(f"Trained and tracked {len(run_ids)} runs in {time.perf_counter() - started:.2f} s\n")

    best = loopml.Client().search_runs(filter="metrics.val_auc > 0.9", order_by="metrics.val_loss ASC").runs
    print("Runs with val_auc > 0.9, best val_loss first:")
    for run in best:
        print(
            f"  {run.name:<18} val_auc={run.metrics['val_auc']:.4f}  val_loss={run.metrics['val_loss']:.4f}"
        )
    cli = f"{Path(sys.executable).parent / 'loopml'}"
    print("\n$ loopml runs compare " + " ".join(run_ids))
    subprocess.run([cli, "runs", "compare", *run_ids], check=True)
    print(
        f"""
Where to look (the store is {PROJECT / ".loopml"}):
  cd {PROJECT}
  {cli} runs list
  {cli} runs show {best[0].run_id if best else run_ids[0]}
  {cli} runs compare {" ".join(run_ids)}
  {cli} runs list --filter 'params.model.alpha = "0.01"' --json
  {cli} data show {version.ref}          # schema, profile, and the three runs that read it"""
    )


if __name__ == "__main__":
    main()
