"""A by-hand tour of the parts: a small tracked training on built-in data, then where to look.

Versions the bundled breast-cancer data set (schema and profile included), trains three scikit-learn
models on it in a throwaway project folder (`demo-project/`), logging params, per-epoch metrics and the model
(skops, never pickle) to LoopML, then searches and compares the runs and shows which runs read the data; runs
the same training as a cached pipeline and a sweep, promotes through the gates, and serves the champion over
HTTP with a canary steered from another process: the parts one at a time, by hand
(`python examples/quickstart.py`). `make demo` (`loopml demo`) runs them as the closed loop instead.
"""

from __future__ import annotations

import json
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
from loopml.pipelines.store import PipelineStore

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
    pipeline_run = run_pipeline(cli)
    print(
        f"""
Where to look (the store is {PROJECT / ".loopml"}):
  cd {PROJECT}
  {cli} runs list
  {cli} runs show {best[0].run_id if best else run_ids[0]}
  {cli} runs compare {" ".join(run_ids)}
  {cli} runs list --filter 'params.model.alpha = "0.01"' --json
  {cli} data show {version.ref}          # schema, profile, and the three runs that read it
  {cli} pipeline show {pipeline_run}     # the pipeline's steps: ran or cached, with durations
  {cli} pipeline explain {pipeline_run} train_model   # which part of its cache key changed
  {cli} models versions breast_cancer    # registered versions; `models show breast_cancer@champion`"""
    )


def run_pipeline(cli: str) -> str:
    """The same training as a cached pipeline: run it, re-run it (all cached), change one param, sweep."""
    shutil.copy(Path(__file__).with_name("train_pipeline.py"), PROJECT / "train_pipeline.py")
    target = "train_pipeline.py:breast_cancer"
    for params in (["-p", "C=1.0"], ["-p", "C=1.0"], ["-p", "C=0.1"]):
        print(f"\n$ loopml pipeline run {target} {' '.join(params)} --no-progress")
        started = time.perf_counter()
        done = subprocess.run(
            [cli, "pipeline", "run", target, *params, "--json", "--no-progress"],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(done.stdout)
        record = PipelineStore(loopml.Client().tracker.stores.db).get_run(result["run_id"])
        steps = ", ".join(f"{s.node}={s.status.value}" for s in record.steps)
        auc = result["value"]["evaluation"]["metrics"]["roc_auc"]
        model = result["value"]["model"]
        print(f"  roc_auc={auc:.4f} -> {model} in {time.perf_counter() - started:.1f} s; steps: {steps}")
    print("\n$ loopml pipeline explain <run> train_model")
    subprocess.run([cli, "pipeline", "explain", result["run_id"], "train_model"], check=True)
    sys.path.insert(0, str(PROJECT))
    import train_pipeline

    print("\nA parallel sweep over C (trials share the cached load/clean/split steps):")
    swept = train_pipeline.sweep(
        train_pipeline.breast_cancer, {"C": [0.01, 0.1, 1.0, 10.0]}, metric="evaluation.metrics.roc_auc"
    )
    for trial in swept.trials:
        print(f"  C={trial.params['C']:<5} roc_auc={trial.value:.4f}")
    print(f"  best: C={swept.best.params['C']}")
    promote_models(cli)
    serve_models(cli)
    return str(result["run_id"])


def promote_models(cli: str) -> None:
    """Registered versions meet the promotion gates: scored with the champion on the same held-out rows."""
    versions = {v.version: v for v in loopml.models.versions("breast_cancer")}
    first, *others = sorted(versions)
    print("\n$ loopml models promote breast_cancer", first)
    subprocess.run(
        [cli, "models", "promote", "breast_cancer", str(first), "-m", "first champion"], check=True
    )
    for version in others:
        print(f"\n$ loopml models promote breast_cancer {version}    # must not be worse than the champion")
        subprocess.run([cli, "models", "promote", "breast_cancer", str(version)], check=False)
    print("\n$ loopml models history breast_cancer")
    subprocess.run([cli, "models", "history", "breast_cancer"], check=True)


def serve_models(cli: str) -> None:
    """The champion behind a real HTTP server; a canary to another version, steered from another process."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    print(f"\n$ loopml serve breast_cancer@champion --port {port} --poll-s 0.5 &")
    server = subprocess.Popen(
        [cli, "serve", "breast_cancer@champion", "--port", str(port), "--poll-s", "0.5"],
        stderr=subprocess.DEVNULL,
    )
    rows = load_breast_cancer(as_frame=True).data.head(3).to_dict(orient="records")

    def post(path: str, body: object) -> tuple[dict[str, str], dict[str, object]]:
        request = urllib.request.Request(  # noqa: S310 - our own server on 127.0.0.1
            url + path, json.dumps(body).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - our own local server
            return dict(answer.headers), json.loads(answer.read())

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/v2/health/ready", timeout=1)  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("loopml serve did not start") from None
                time.sleep(0.2)
        _, body = post("/predict/breast_cancer", rows)
        print(f"$ curl {url}/predict/breast_cancer -d '<3 rows>'")
        print(f"  version {body['model_version']} answered: {[p['prediction'] for p in body['predictions']]}")  # type: ignore[union-attr]
        champion = loopml.models.get("breast_cancer@champion").version
        other = next(
            (v.version for v in loopml.models.versions("breast_cancer") if v.version != champion), None
        )
        if other is not None:
            loopml.models.set_alias("breast_cancer", "challenger", other, reason="demo canary")
            print("\n$ loopml deploy set breast_cancer --challenger challenger --mode canary --share 0.5")
            subprocess.run(
                [cli, "deploy", "set", "breast_cancer", "--challenger", "challenger", "--mode", "canary",
                 "--share", "0.5", "--max-error-rate", "0.05"],
                check=True,
            )  # fmt: skip
            time.sleep(1.0)  # the server polls every 0.5 s
            answered = [post("/predict/breast_cancer", rows[:1])[0]["x-model-version"] for _ in range(40)]
            print(f"  40 requests answered by: { {v: answered.count(v) for v in sorted(set(answered))} }")
            subprocess.run(
                [cli, "deploy", "set", "breast_cancer", "-m", "demo over: champion only"], check=True
            )
        ids = [p["prediction_id"] for p in body["predictions"]]  # type: ignore[union-attr]
        post("/feedback", {"labels": [{"prediction_id": i, "label": 1} for i in ids]})
        print(f"  labels for {len(ids)} predictions sent to /feedback (joined by prediction id)")
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("\n$ loopml predictions list breast_cancer")
    subprocess.run([cli, "predictions", "list", "breast_cancer"], check=True)
    check_drift(cli)


def check_drift(cli: str) -> None:
    """A batch whose tumours measure 30% larger, checked against the champion's training profile."""
    batch = load_breast_cancer(as_frame=True).data
    batch["mean radius"] *= 1.3
    batch["mean area"] *= 1.3**2
    batch.to_csv(PROJECT / "bigger_tumours.csv", index=False)
    print(
        "\n$ loopml monitor check breast_cancer@champion --current bigger_tumours.csv --html drift.html --json"
    )
    args = ["breast_cancer@champion", "--current", "bigger_tumours.csv", "--html", "drift.html", "--json"]
    done = subprocess.run(
        [cli, "monitor", "check", *args],
        check=False,
        capture_output=True,
        text=True,
    )
    drift = json.loads(done.stdout)["drift"]
    drifted = [name for name, column in drift["columns"].items() if column["drifted"]]
    print(f"  drifted columns: {', '.join(drifted)} ({len(drifted)} of {len(drift['columns'])})")
    verdict = "drifted" if drift["drifted"] else f"not drifted (share under {drift['drift_share']:.0%})"
    print(f"  dataset: {verdict}; exit {done.returncode}; the report is {PROJECT / 'drift.html'}")


if __name__ == "__main__":
    main()
