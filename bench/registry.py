"""LoopML's model registry vs MLflow's, side by side in one run, on the same model and data.

    bash bench/setup_peers.sh                     # once: .venv-peers with the pinned MLflow (~1 min)
    .venv/bin/python bench/registry.py            # full run (~35 s; MLflow ~15 s of it)
    .venv/bin/python bench/registry.py --quick    # 2 models a side, smoke test (~20 s)
    .venv/bin/python bench/registry.py --no-mlflow
    .venv/bin/python bench/registry.py --profile register   # cProfile of the timed registers; also
        # register-run, load-package, load-cold. Writes bench/results/profile-registry-<name>.prof

Workload, the same on both sides: `make_classification(n_samples=2000, n_features=20, n_informative=10,
random_state=0)` as a pandas DataFrame (columns f0..f19), and RandomForestClassifier(n_estimators=100,
random_state=seed) fitted on it for seeds 0..R (seed 0 is the untimed first call, seeds 1..R are timed, so
every timed registration is a new, distinct model: nothing is deduplicated). Both venvs hold scikit-learn
1.9.1 and numpy 2.4.6, so both sides fit the same forests (checked: a digest of `predict_proba` of seed 1).

LoopML (in this process, `loopml.configure(project_dir=tmp)`, a fresh temp project per phase):
  register       `loopml.models.register("rf", model, sample=X)` outside a run, with the ONNX verification
                 off (`onnx=False`, or a bench-only switch when the code has no such parameter): skops
                 package, canonical content hash, signature, input example, row hashes, library versions read
                 from the running interpreter (an audit hook counts the subprocesses started during the timed
                 calls: 0 expected), blob store, registry row. Also the same model again (returns the existing
                 version) and inside `start_run` (lineage: run, inputs, git commit, metrics)
  load           `loopml.models.load("rf@champion")`: (a) warm, from the in-process memo; (b) the memo
                 cleared but the package already restored in .loopml/cache/models; (c) cold: memo cleared and
                 .loopml/cache/models deleted, so the package is restored (and verified) from the blob store
  breakdown      the same registrations and loads (b), (c) in another fresh project, with timers wrapped
                 around the functions they call (monkeypatched in this process only; src/ is untouched)
  onnx           apart, as the issue asks: register with the ONNX verification on (skl2onnx copy converted
                 and compared with the forest), and `load(..., serving=True)` of that copy; "not measured
                 yet" when register has no ONNX verification
MLflow (the script MLFLOW_SCRIPT, written into a temp dir and run with .venv-peers/bin/python: MLflow is
never imported into, nor installed in, LoopML's venv; SQLite backend and file artifacts in the temp dir):
  register       in a run: `infer_signature(X, model.predict(X))` (timed apart), `mlflow.sklearn.log_model(
                 model, name="model", signature=sig, pip_requirements=[mlflow==, scikit-learn==])` saving with
                 skops (MLflow 3's default format; it dumps, then loads back with `skops_trusted_types`) and
                 again with cloudpickle, then `mlflow.register_model(info.model_uri, "rf")`; also log_model
                 with MLflow's default pip requirements (inferred by loading the model in a subprocess)
  load           `mlflow.sklearn.load_model("models:/rf@<alias>")` in a loop, both formats (MLflow keeps no
                 memo: every call resolves the alias, copies the artifacts into a temp dir and deserializes);
                 also pyfunc. MLflow 3.17 loads no sklearn model without MLFLOW_ALLOW_PICKLE_DESERIALIZATION.
Every timed call also records the time spent in the garbage collector (a full collection now and then
costs ~110 ms here), and each phase its `noise` (share of the machine's CPU used by other processes, as
peers/noise.py does). Prints markdown tables and appends one JSON line to bench/results/registry.json.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/peers, also when imported
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import loopml
import loopml.models
from harness import (
    PEERS_PYTHON,
    append_result,
    fmt_met,
    fmt_ms,
    fmt_ratio,
    last_json_line,
    measured,
    mlflow_env,
    noise_row,
    now,
    optional_peer,
    phase_noises,
    profile_only,
    run_config,
    run_peer,
    save_profile,
    temp_project,
    to_ms,
    with_noise,
)
from harness import markdown_table as markdown
from peers.common import machine_info, versions
from source_state import source_state

DATA = {"n_samples": 2000, "n_features": 20, "n_informative": 10, "random_state": 0}
FOREST = {"n_estimators": 100, "n_jobs": 1}
NAME = "rf"
ALIAS = "champion"
PROFILE_TARGETS = ("register", "register-run", "load-package", "load-cold")
REGISTER_TARGET_MS = 100.0
LOAD_TARGET_MS = 50.0

# -- the peer side -----------------------------------------------------------------------------------------------

MLFLOW_SCRIPT = """
import hashlib
import json
import os
import sys
import time
import warnings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
now = time.perf_counter
spawned = [0]


def _audit(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec", "os.system"):
        spawned[0] += 1


sys.addaudithook(_audit)
cfg = json.loads(sys.argv[1])
res = {}

t = now()
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

X, y = make_classification(**cfg["data"])
X = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
models = [RandomForestClassifier(**cfg["forest"], random_state=s).fit(X, y) for s in cfg["seeds"]]
res["train_s"] = now() - t
res["model_check"] = hashlib.sha256(models[1].predict_proba(X).tobytes()).hexdigest()[:16]

t = now()
import mlflow
import mlflow.sklearn
import sklearn
from mlflow import MlflowClient
from mlflow.models import infer_signature

res["import_s"] = now() - t
res["versions"] = {"mlflow": mlflow.__version__, "scikit-learn": sklearn.__version__}
workdir = cfg["workdir"]
db = os.path.join(workdir, "mlflow.db")
t = now()
mlflow.set_tracking_uri(f"sqlite:///{db}")
mlflow.set_registry_uri(f"sqlite:///{db}")
client = MlflowClient()
experiment = client.create_experiment("bench-registry", artifact_location=f"file://{workdir}/artifacts")
mlflow.set_experiment(experiment_id=experiment)
res["setup_s"] = now() - t
requirements = [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}"]
name = cfg["name"]


# MLflow 3's default sklearn format is skops: log_model dumps the model, then loads it back with
# `skops_trusted_types` as a check. A forest needs sklearn.tree._tree.Tree trusted (skops flags it).
FORMATS = {
    "skops": {"serialization_format": "skops", "skops_trusted_types": ["sklearn.tree._tree.Tree"]},
    "cloudpickle": {"serialization_format": "cloudpickle"},
}


def register(model, pip_requirements, fmt):
    before = spawned[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            t0 = now()
            signature = infer_signature(X, model.predict(X))
            t1 = now()
            info = mlflow.sklearn.log_model(
                model, name="model", signature=signature, pip_requirements=pip_requirements, **FORMATS[fmt]
            )
            t2 = now()
            version = mlflow.register_model(info.model_uri, name)
            t3 = now()
    return {
        "signature_s": t1 - t0,
        "log_model_s": t2 - t1,
        "register_model_s": t3 - t2,
        "version": int(version.version),
        "subprocesses": spawned[0] - before,
    }


expected = models[-1].predict(X)
for fmt in FORMATS:
    res[f"first_{fmt}"] = register(models[0], requirements, fmt)
    res[f"explicit_{fmt}"] = [register(m, requirements, fmt) for m in models[1:]]
    client.set_registered_model_alias(name, fmt, res[f"explicit_{fmt}"][-1]["version"])
res["default"] = [register(m, None, "skops") for m in models[1 : 1 + cfg["default_versions"]]]
loads = [
    ("sklearn_load_skops", mlflow.sklearn.load_model, "skops"),
    ("sklearn_load_cloudpickle", mlflow.sklearn.load_model, "cloudpickle"),
    ("pyfunc_load_skops", mlflow.pyfunc.load_model, "skops"),
]
for key, load, alias in loads:
    times = []
    loaded = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(cfg["load_repeats"] + 1):
            t = now()
            loaded = load(f"models:/{name}@{alias}")
            times.append(now() - t)
    res[key] = {"first_s": times[0], "samples_s": times[1:], "predict_ok": bool((loaded.predict(X) == expected).all())}
for fmt, file in (("skops", "model.skops"), ("cloudpickle", "model.pkl")):
    found = [os.path.join(d, f) for d, _, fs in os.walk(workdir) for f in fs if f == file]
    res[f"{fmt}_bytes"] = os.path.getsize(found[0]) if found else None
print(json.dumps(res))
"""

# -- subprocess count, projects ------------------------------------------------------------------------------------


_spawned = [0]
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec", "os.system"})


def _audit(event: str, _args: Any) -> None:
    if event in _SPAWN_EVENTS:
        _spawned[0] += 1


sys.addaudithook(_audit)  # counts every subprocess this process starts (MLflow's is started by the bench)


def project(tag: str) -> contextlib.AbstractContextManager[tuple[loopml.Tracker, Path]]:
    """A fresh LoopML project in a temp dir, made the process-wide one; removed afterwards."""
    return temp_project(f"loopml-bench-registry-{tag}-")


def _forget_loaded() -> None:
    """Empty the process's memo of loaded models (where the measured commit keeps it)."""
    try:
        from loopml.registry.loading import forget_loaded
    except ImportError:  # before loopml.registry.loading: the memo lived in loopml.models
        with loopml.models._loaded_lock:  # type: ignore[attr-defined]
            loopml.models._loaded.clear()  # type: ignore[attr-defined]
        return
    forget_loaded()


def _summary(samples: list[float], gc_s: list[float] | None = None) -> dict[str, Any]:
    ms = [to_ms(x) for x in samples]
    out: dict[str, Any] = {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "samples_ms": ms,
    }
    if gc_s is not None:
        out["gc_ms"] = [to_ms(x) for x in gc_s]
        out["p50_without_gc_ms"] = round(
            statistics.median(to_ms(a - b) for a, b in zip(samples, gc_s, strict=True)), 3
        )
    return out


_gc_clock = {"start": 0.0, "seconds": 0.0}


def _gc_callback(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_clock["start"] = now()
    else:
        _gc_clock["seconds"] += now() - _gc_clock["start"]


gc.callbacks.append(_gc_callback)  # time in the garbage collector, per timed call


class Samples:
    """Wall time of each timed call, and the part of it spent in the garbage collector."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.gc: list[float] = []

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        gc0, t = _gc_clock["seconds"], now()
        try:
            yield
        finally:
            self.wall.append(now() - t)
            self.gc.append(_gc_clock["seconds"] - gc0)

    def summary(self) -> dict[str, Any]:
        return _summary(self.wall, self.gc)


def workload(repeats: int) -> tuple[pd.DataFrame, np.ndarray, list[RandomForestClassifier], float]:
    """The DataFrame, labels, and R + 1 forests (seeds 0..R), with the seconds their fits took."""
    X, y = make_classification(**DATA)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    t = now()
    models = [RandomForestClassifier(**FOREST, random_state=s).fit(frame, y) for s in range(repeats + 1)]
    return frame, y, models, now() - t


def _model_check(model: RandomForestClassifier, X: pd.DataFrame) -> str:
    return hashlib.sha256(model.predict_proba(X).tobytes()).hexdigest()[:16]


# -- LoopML: register and load ------------------------------------------------------------------------------------


def bench_register_and_load(
    X: pd.DataFrame, models: list[RandomForestClassifier], dedup: int, warm_loads: int
) -> dict[str, Any]:
    """Register R distinct forests (after one untimed first), the same one again, then load by alias 3 ways."""
    res: dict[str, Any] = {}
    register = loopml.models.register
    with project("register") as (tracker, _):
        t = now()
        first = register(NAME, models[0], sample=X)
        res["first_ms"] = to_ms(now() - t)  # lazy imports (skops, yaml), store tables
        samples, created = Samples(), []
        spawned0 = _spawned[0]
        with measured("register"):
            for model in models[1:]:
                with samples.timed():
                    registered = register(NAME, model, sample=X)
                created.append(registered.created)
        res["subprocesses"] = _spawned[0] - spawned0
        res["register"] = samples.summary()
        res["all_created"] = all(created) and first.created
        last = registered.version
        res["versions"] = last.version

        again, same = Samples(), []
        for _ in range(dedup):
            with again.timed():
                registered = register(NAME, models[1], sample=X)
            same.append(not registered.created and registered.version.version == 2)
        if same:
            res["register_again"] = {**again.summary(), "returned_existing": all(same)}

        loopml.models.set_alias(NAME, ALIAS, last.version, reason="bench")
        ref = f"{NAME}@{ALIAS}"
        expected = models[-1].predict(X)
        cache = tracker.settings.home_dir / "cache" / "models"
        _forget_loaded()
        shutil.rmtree(cache, ignore_errors=True)
        t = now()
        model = loopml.models.load(ref)
        res["load_first_ms"] = to_ms(now() - t)  # first load in this process: the skops load path's imports
        res["package_bytes"] = sum(f.stat().st_size for f in (cache / last.package_digest).rglob("*"))
        res["model_skops_bytes"] = (cache / last.package_digest / "model" / "model.skops").stat().st_size

        samples = Samples()
        with measured("load-memo"):
            for _ in range(warm_loads):
                with samples.timed():
                    model = loopml.models.load(ref)
        res["load_memo"] = samples.summary()
        ok = bool((model.predict(X) == expected).all())

        samples = Samples()
        for _ in range(len(models) - 1):
            _forget_loaded()
            with measured("load-package"), samples.timed():
                model = loopml.models.load(ref)
            ok = ok and bool((model.predict(X) == expected).all())
        res["load_package"] = samples.summary()

        samples = Samples()
        for _ in range(len(models) - 1):
            _forget_loaded()
            shutil.rmtree(cache)
            with measured("load-cold"), samples.timed():
                model = loopml.models.load(ref)
            ok = ok and bool((model.predict(X) == expected).all())
        res["load_cold"] = samples.summary()
        res["predict_ok"] = ok
    return res


def onnx_wiring() -> str:
    """How this LoopML runs the ONNX verification at register: "register" (an `onnx=` parameter of
    `loopml.models.register`), "build_package" (inside the package build, on by default, no switch in
    `register`), or "none" (not wired into register)."""
    import inspect

    from loopml.registry import package

    if "onnx" in inspect.signature(loopml.models.register).parameters:
        return "register"
    if "onnx" in inspect.signature(package.build_package).parameters:
        return "build_package"
    return "none"


@contextlib.contextmanager
def onnx_verification(enabled: bool) -> Iterator[None]:
    """Register with the ONNX verification on or off (bench-only switch; nothing to do when it is not wired)."""
    from loopml.registry import package

    wiring = onnx_wiring()
    if wiring == "none":
        yield
        return
    owner: Any = loopml.models if wiring == "register" else package
    attribute = "register" if wiring == "register" else "build_package"
    original = getattr(owner, attribute)
    setattr(owner, attribute, functools.partial(original, onnx=enabled))
    try:
        yield
    finally:
        setattr(owner, attribute, original)


def bench_onnx(X: pd.DataFrame, models: list[RandomForestClassifier]) -> dict[str, Any]:
    """Register with the ONNX verification on (skl2onnx copy checked against the forest), apart from the rest."""
    res: dict[str, Any] = {"wiring": onnx_wiring()}
    if res["wiring"] == "none":
        return res
    with project("onnx"), onnx_verification(True):
        loopml.models.register(NAME, models[0], sample=X)  # untimed first (skl2onnx, onnxruntime imports)
        samples, outcomes = Samples(), []
        for model in models[1:]:
            with samples.timed():
                registered = loopml.models.register(NAME, model, sample=X)
            outcomes.append(loopml.models.manifest(registered.version.ref).get("onnx") or {})
        res["register"] = samples.summary()
        res["kept"] = [bool(o.get("kept")) for o in outcomes]
        res["verification_ms"] = _summary([float(o.get("seconds") or 0.0) for o in outcomes])
        res["reason"] = outcomes[-1].get("reason")
        import inspect

        if "serving" in inspect.signature(loopml.models.load).parameters:
            loopml.models.set_alias(NAME, ALIAS, registered.version.version, reason="bench")
            ref = f"{NAME}@{ALIAS}"
            expected = models[-1].predict(X)
            _forget_loaded()
            loopml.models.load(ref, serving=True)  # untimed first
            samples = Samples()
            for _ in range(len(models) - 1):
                _forget_loaded()
                with samples.timed():
                    served = loopml.models.load(ref, serving=True)
            res["load_serving"] = samples.summary()
            res["load_serving_type"] = f"{type(served).__module__}.{type(served).__qualname__}"
            res["serving_predict_ok"] = bool((np.asarray(served.predict(X)) == expected).all())
    return res


def bench_register_in_run(X: pd.DataFrame, models: list[RandomForestClassifier]) -> dict[str, Any]:
    """The same registrations inside `start_run` (lineage); only the register call is timed."""
    res: dict[str, Any] = {}
    with project("register-run"):
        with loopml.start_run(experiment="bench", name="first"):
            loopml.models.register(NAME, models[0], sample=X)
        samples = Samples()
        for i, model in enumerate(models[1:], start=1):
            with loopml.start_run(experiment="bench", name=f"fit-{i}") as run:
                run.log_metric("accuracy", 1.0)
                with measured("register-run"), samples.timed():
                    registered = loopml.models.register(NAME, model, sample=X)
        res["register"] = samples.summary()
        res["lineage_run"] = registered.version.run_id == run.run_id
    return res


class Timers:
    """Wall time per wrapped function (monkeypatched in this process, restored afterwards)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.marks: list[dict[str, float]] = [{}]  # running totals after each measured call
        self._undo: list[Callable[[], None]] = []

    def mark(self) -> None:
        self.marks.append(dict(self.seconds))

    def median_ms(self, key: str) -> float:
        """Median over the measured calls of the time spent in `key` (robust to one GC pause)."""
        deltas = [b.get(key, 0.0) - a.get(key, 0.0) for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return round(statistics.median(deltas) * 1000, 2)

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        owned = attribute in vars(owner)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = now()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += now() - t
                self.calls[label] += 1

        setattr(owner, attribute, timed)
        if owned:
            self._undo.append(lambda: setattr(owner, attribute, original))
        else:
            self._undo.append(lambda: delattr(owner, attribute))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


# What `register` calls, as of the measured commit: (module, attribute path, key, parent key, description).
# Resolved when the breakdown runs; a function the code no longer has is skipped (and listed as missing).
BREAKDOWN = (
    ("loopml.models", "register", "register", None, "register (total)"),
    (
        "loopml.registry.lineage",
        "run_lineage",
        "lineage",
        "register",
        "lineage: run lookup (none outside a run)",
    ),
    ("loopml.models", "_lineage", "lineage", "register", "lineage: run lookup (none outside a run)"),
    ("loopml.registry.package", "build_package", "build", "register", "build_package"),
    ("loopml.registry.store", "RegistryStore.add_version", "row", "register", "registry row: add_version"),
    ("loopml.registry.webhooks", "announce", "announce", "register", "webhooks: announce"),
    ("loopml.registry.package", "flavor_for", "flavor", "build", "flavor lookup"),
    (
        "loopml.registry.flavor_sklearn",
        "SklearnFlavor.content_hash",
        "hash",
        "build",
        "canonical content hash",
    ),
    (
        "loopml.registry.package",
        "_signature",
        "signature",
        "build",
        "signature (predict, predict_proba, infer)",
    ),
    ("loopml.registry.package", "infer_signature", "infer", "signature", "infer_signature (types, ranges)"),
    ("loopml.registry.flavor_sklearn", "SklearnFlavor.save", "save", "build", "skops save (model.skops)"),
    ("skops.io", "dumps", "skops_dumps", "save", "skops.io.dumps"),
    ("skops.io", "get_untrusted_types", "untrusted", "save", "skops get_untrusted_types (allow-list check)"),
    ("loopml.registry.package", "_example", "example", "build", "input example (5 rows, JSON)"),
    ("loopml.registry.package", "row_hashes", "rows", "build", "row hashes of the sample"),
    (
        "loopml.registry.flavor_sklearn",
        "SklearnFlavor.libraries",
        "libraries",
        "build",
        "environment: library versions",
    ),
    ("yaml", "safe_dump", "yaml", "build", "manifest YAML"),
    ("loopml.storage.blobs.store", "BlobStore.put_files", "put_files", "build", "blob store: put_files"),
    ("loopml.registry.package", "put_tree", "put_tree", "build", "blob store: put_tree"),
)


def _resolve(module: str, path: str) -> tuple[Any, str] | None:
    """(owner, attribute) for "module" + "attr" or "Class.attr"; None when the code has no such function."""
    import importlib

    try:
        owner: Any = importlib.import_module(module)
    except ImportError:
        return None
    *classes, attribute = path.split(".")
    for name in classes:
        owner = getattr(owner, name, None)
        if owner is None:
            return None
    return (owner, attribute) if callable(getattr(owner, attribute, None)) else None


LOAD_BREAKDOWN = (
    ("loopml.models", "load", "load", None, "load (total)"),
    (
        "loopml.registry.store",
        "RegistryStore.get_version",
        "get_version",
        "load",
        "alias lookup: get_version",
    ),
    ("loopml.registry.loading", "open_package", "open", "load", "open_package (restore if not cached)"),
    ("loopml.registry.package", "open_package", "open", "load", "open_package (restore if not cached)"),
    ("loopml.registry.package", "get_tree", "get_tree", "open", "blob store: get_tree"),
    (
        "loopml.storage.blobs.store",
        "BlobStore.get_file",
        "get_file",
        "open",
        "blob store: get_file (verified)",
    ),
    ("loopml.registry.loading", "read_manifest", "manifest", "load", "read_manifest (YAML)"),
    ("loopml.registry.package", "read_manifest", "manifest", "load", "read_manifest (YAML)"),
    ("loopml.registry.loading", "load_from", "load_from", "load", "load_from"),
    ("loopml.registry.package", "load_from", "load_from", "load", "load_from"),
    ("loopml.registry.flavor", "Flavor.check_libraries", "check", "load_from", "library version check"),
    (
        "loopml.registry.flavor_sklearn",
        "SklearnFlavor.load",
        "flavor_load",
        "load_from",
        "SklearnFlavor.load",
    ),
    ("loopml.registry.skops_io", "loads", "io_loads", "flavor_load", "loopml skops_io.loads"),
    (
        "skops.io",
        "get_untrusted_types",
        "untrusted",
        "io_loads",
        "skops get_untrusted_types (allow-list check)",
    ),
    ("skops.io", "loads", "skops_loads", "io_loads", "skops.io.loads (parse again, audit, construct)"),
)


def _wrap_all(timers: Timers, targets: tuple[tuple[Any, ...], ...]) -> list[str]:
    """Wrap the first function found for each key; the targets not found are returned."""
    wrapped, missing = set(), []
    for module, path, key, _, _ in targets:
        if key in wrapped:
            continue
        found = _resolve(module, path)
        if found is None:
            missing.append(f"{module}:{path}")
            continue
        timers.wrap(*found, key)
        wrapped.add(key)
    return missing


def _parts(timers: Timers, targets: tuple[tuple[Any, ...], ...], n: int) -> list[dict[str, Any]]:
    """Median ms per call of each wrapped part, plus "rest of X" for every part with parts inside it."""
    parts, seen = [], set()
    for _, _, key, parent, description in targets:
        if key in seen or key not in timers.calls:
            continue
        seen.add(key)
        parts.append(
            {
                "part": description,
                "key": key,
                "within": parent,
                "ms": timers.median_ms(key),
                "mean_ms": round(timers.seconds[key] / n * 1000, 2),
                "calls": round(timers.calls[key] / n, 2),
            }
        )
    ms = {p["key"]: p["ms"] for p in parts}
    described = {p["key"]: p["part"] for p in parts}
    for parent in list(ms):
        inner = [p["ms"] for p in parts if p["within"] == parent]
        if inner:
            parts.append(
                {
                    "part": f"rest of {described[parent]}",
                    "key": f"{parent}_rest",
                    "within": parent,
                    "ms": round(ms[parent] - sum(inner), 2),
                    "calls": None,
                }
            )
    return parts


def bench_breakdown(X: pd.DataFrame, models: list[RandomForestClassifier]) -> dict[str, Any]:
    """Where a registration's and a load's time goes: timers around the functions they call (no profiler)."""
    res: dict[str, Any] = {}
    n = len(models) - 1
    with project("breakdown") as (tracker, _):
        loopml.models.register(NAME, models[0], sample=X)  # untimed first, as in the timed phase
        timers = Timers()
        res["register_missing"] = _wrap_all(timers, BREAKDOWN)
        try:
            for model in models[1:]:
                registered = loopml.models.register(NAME, model, sample=X)
                timers.mark()
        finally:
            timers.restore()
        res["register"] = _parts(timers, BREAKDOWN, n)

        loopml.models.set_alias(NAME, ALIAS, registered.version.version, reason="bench")
        ref = f"{NAME}@{ALIAS}"
        cache = tracker.settings.home_dir / "cache" / "models"
        _forget_loaded()
        loopml.models.load(ref)  # untimed first load (imports)
        for case, cold in (("load_package", False), ("load_cold", True)):
            timers = Timers()
            res[f"{case}_missing"] = _wrap_all(timers, LOAD_BREAKDOWN)
            try:
                for _ in range(n):
                    _forget_loaded()
                    if cold:
                        shutil.rmtree(cache)
                    loopml.models.load(ref)
                    timers.mark()
            finally:
                timers.restore()
            res[case] = _parts(timers, LOAD_BREAKDOWN, n)
    res["n"] = n
    return res


# -- MLflow ----------------------------------------------------------------------------------------------------------


def run_mlflow(repeats: int, default_versions: int, load_repeats: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="loopml-bench-registry-mlflow-"))
    script = workdir / "registry_mlflow.py"
    script.write_text(MLFLOW_SCRIPT)
    cfg = {
        "workdir": str(workdir / "store"),
        "data": DATA,
        "forest": FOREST,
        "seeds": list(range(repeats + 1)),
        "name": NAME,
        "default_versions": default_versions,
        "load_repeats": load_repeats,
    }
    Path(cfg["workdir"]).mkdir()
    # MLflow 3.17 refuses to load any sklearn model (skops too) without MLFLOW_ALLOW_PICKLE_DESERIALIZATION
    env = mlflow_env(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true")
    try:
        proc, wall, phase_noise = run_peer(
            [str(PEERS_PYTHON), str(script), json.dumps(cfg)], env=env, cwd=workdir
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        sys.stderr.write(proc.stderr[-5000:])
        return {"error": f"MLflow run failed (rc {proc.returncode})", "noise": phase_noise}
    raw = last_json_line(proc.stdout)

    def parts(rows: list[dict[str, Any]]) -> dict[str, Any]:
        both = [r["log_model_s"] + r["register_model_s"] for r in rows]
        return {
            "log_model": _summary([r["log_model_s"] for r in rows]),
            "register_model": _summary([r["register_model_s"] for r in rows]),
            "log_and_register": _summary(both),
            "signature": _summary([r["signature_s"] for r in rows]),
            "with_signature": _summary([b + r["signature_s"] for b, r in zip(both, rows, strict=True)]),
            "subprocesses": [r["subprocesses"] for r in rows],
        }

    res: dict[str, Any] = {
        "versions": raw["versions"],
        "import_s": round(raw["import_s"], 3),
        "setup_s": round(raw["setup_s"], 3),
        "train_s": round(raw["train_s"], 3),
        "model_check": raw["model_check"],
        "default": parts(raw["default"]) if raw["default"] else None,
        "wall_s": round(wall, 2),
        "noise": phase_noise,
    }
    for fmt in ("skops", "cloudpickle"):
        first = raw[f"first_{fmt}"]
        res[f"first_{fmt}"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in first.items()}
        res[f"explicit_{fmt}"] = parts(raw[f"explicit_{fmt}"])
        res[f"{fmt}_bytes"] = raw[f"{fmt}_bytes"]
    for key in ("sklearn_load_skops", "sklearn_load_cloudpickle", "pyfunc_load_skops"):
        res[key] = {
            "first_ms": to_ms(raw[key]["first_s"]),
            **_summary(raw[key]["samples_s"]),
            "predict_ok": raw[key]["predict_ok"],
        }
    return res


# -- report ----------------------------------------------------------------------------------------------------------


def _spread(s: dict[str, Any]) -> str:
    text = f"p50 {fmt_ms(s['p50_ms'])} ({fmt_ms(s['min_ms'])}-{fmt_ms(s['max_ms'])})"
    paused = [g for g in s.get("gc_ms", []) if g >= 5]
    if paused:
        text += f"; {len(paused)} of {s['n']} spent up to {fmt_ms(max(paused))} in the garbage collector"
    return text


def build_table(lo: dict[str, Any], ml: dict[str, Any] | None) -> tuple[list[list[str]], dict[str, Any]]:
    """Rows of (operation, LoopML, MLflow, MLflow / LoopML, target) and the ratios as numbers."""
    rows: list[list[str]] = []
    ratios: dict[str, Any] = {}
    main = lo["register"]
    reg = main["register"]
    p50 = reg["p50_ms"]

    def vs(key: str, mlflow_ms: float, loopml_ms: float) -> str:
        ratios[key] = round(mlflow_ms / loopml_ms, 2)
        return fmt_ratio(ratios[key])

    def mlflow_register(fmt: str) -> tuple[str, str]:
        if not ml:
            return "-", "-"
        ex = ml[f"explicit_{fmt}"]
        cell = (
            f"`log_model` ({fmt}, explicit pip requirements) + `register_model`: {_spread(ex['log_and_register'])} "
            f"(log_model {fmt_ms(ex['log_model']['p50_ms'])}, register_model {fmt_ms(ex['register_model']['p50_ms'])})"
        )
        return cell, vs(f"register_vs_mlflow_{fmt}", ex["log_and_register"]["p50_ms"], p50)

    cell, ratio = mlflow_register("skops")
    rows.append(
        [
            f"register a 100-tree random forest (2,000 x 20 sample), {reg['n']} distinct models, outside a run",
            f"{_spread(reg)}; subprocesses started: {main['subprocesses']}",
            cell,
            ratio,
            f"<= 100 ms: {fmt_met(p50 <= REGISTER_TARGET_MS)}",
        ]
    )
    if ml:
        cell, ratio = mlflow_register("cloudpickle")
        rows.append(
            [
                "same, MLflow saving with cloudpickle (not a safe format)",
                f"p50 {fmt_ms(p50)}",
                cell,
                ratio,
                "-",
            ]
        )
    if ml:
        ex = ml["explicit_skops"]
        rows.append(
            [
                "same, MLflow also timing `infer_signature(X, model.predict(X))` (LoopML infers its signature "
                "inside `register`)",
                f"p50 {fmt_ms(p50)}",
                f"skops: {_spread(ex['with_signature'])} (infer_signature {fmt_ms(ex['signature']['p50_ms'])})",
                vs("register_vs_mlflow_skops_with_signature", ex["with_signature"]["p50_ms"], p50),
                "-",
            ]
        )
    run = lo.get("register_run")
    if run:
        run_reg = run["register"]
        cell, ratio = "-", "-"
        if ml:
            both = ml["explicit_skops"]["log_and_register"]["p50_ms"]
            cell = f"(MLflow's rows are in a run too) skops {fmt_ms(both)}"
            ratio = vs("register_in_run_vs_mlflow_skops", both, run_reg["p50_ms"])
        rows.append(
            [
                "register inside `start_run` (lineage: run, inputs, git commit, metrics)",
                f"{_spread(run_reg)}; lineage recorded: {run['lineage_run']}",
                cell,
                ratio,
                f"<= 100 ms: {fmt_met(run_reg['p50_ms'] <= REGISTER_TARGET_MS)}",
            ]
        )
    if ml:
        first = ml["first_skops"]
        cell = (
            f"skops {fmt_ms((first['log_model_s'] + first['register_model_s']) * 1000)} "
            f"(after `import mlflow`: {fmt_ms(ml['import_s'] * 1000)}, store setup {fmt_ms(ml['setup_s'] * 1000)})"
        )
    else:
        cell = "-"
    rows.append(
        ["first registration in the process (lazy imports)", fmt_ms(main["first_ms"]), cell, "-", "-"]
    )
    again = main.get("register_again")
    if again:
        rows.append(
            [
                "register the same model again (returns the existing version)",
                f"{_spread(again)}; existing version returned: {again['returned_existing']}",
                "- (MLflow logs a new copy every time)",
                "-",
                "-",
            ]
        )
    if ml and ml["default"]:
        d = ml["default"]
        rows.append(
            [
                "MLflow `log_model` with its default pip requirements (inferred by loading the model in a "
                "subprocess), skops",
                f"p50 {fmt_ms(p50)}",
                f"{_spread(d['log_and_register'])}; subprocesses per version: {d['subprocesses']}",
                vs("register_vs_mlflow_defaults", d["log_and_register"]["p50_ms"], p50),
                "-",
            ]
        )
    onnx = lo.get("onnx") or {}
    if onnx.get("register"):
        with_onnx = onnx["register"]
        verify = onnx["verification_ms"]
        ratios["onnx_verification_ms"] = verify["p50_ms"]
        rows.append(
            [
                "ONNX verification, apart: register with the skl2onnx copy converted and checked "
                f"(wired in `{onnx['wiring']}`; the rows above have it off)",
                f"{_spread(with_onnx)}; verification alone (manifest) p50 {fmt_ms(verify['p50_ms'])}; "
                f"copy kept: {sum(onnx['kept'])} of {len(onnx['kept'])}",
                "-",
                "-",
                "reported apart",
            ]
        )
        if onnx.get("load_serving"):
            rows.append(
                [
                    '`load("rf@champion", serving=True)`: the ONNX copy, memo cleared, package on disk',
                    f"{_spread(onnx['load_serving'])}; predicts as the forest: {onnx['serving_predict_ok']}",
                    "-",
                    "-",
                    "-",
                ]
            )
    else:
        rows.append(
            ["ONNX verification of the registered model", "not measured yet (not wired)", "-", "-", "-"]
        )

    for key, label, target in (
        ("load_memo", "(a) warm: in-process memo", False),
        ("load_package", "(b) memo cleared, package already restored in .loopml/cache/models", True),
        ("load_cold", "(c) cold: memo cleared and cache deleted, restored from the blob store", True),
    ):
        s = main[key]
        cell, ratio = "-", "-"
        if ml:
            sk, pk = ml["sklearn_load_skops"], ml["sklearn_load_cloudpickle"]
            cell = (
                f'`mlflow.sklearn.load_model("models:/rf@<alias>")`: skops {_spread(sk)}; '
                f"cloudpickle {_spread(pk)}"
            )
            ratio = (
                f"skops {vs(f'{key}_vs_mlflow_skops', sk['p50_ms'], s['p50_ms'])}; "
                f"cloudpickle {vs(f'{key}_vs_mlflow_cloudpickle', pk['p50_ms'], s['p50_ms'])}"
            )
        rows.append(
            [
                f'`loopml.models.load("rf@champion")` {label}, {s["n"]} loads',
                _spread(s),
                cell,
                ratio,
                f"<= 50 ms: {fmt_met(s['p50_ms'] <= LOAD_TARGET_MS)}" if target else "-",
            ]
        )
    if ml:
        py = ml["pyfunc_load_skops"]
        rows.append(
            ["MLflow `mlflow.pyfunc.load_model` by alias, skops (reference)", "-", _spread(py), "-", "-"]
        )
    rows.append(
        [
            "first load in the process (cold, plus the load path's imports)",
            fmt_ms(main["load_first_ms"]),
            f"skops {fmt_ms(ml['sklearn_load_skops']['first_ms'])}; cloudpickle "
            f"{fmt_ms(ml['sklearn_load_cloudpickle']['first_ms'])}"
            if ml
            else "-",
            "-",
            "-",
        ]
    )
    ok = main["predict_ok"] and (
        not ml or all(ml[k]["predict_ok"] for k in ("sklearn_load_skops", "sklearn_load_cloudpickle"))
    )
    rows.append(["loaded models predict as the registered one", str(main["predict_ok"]), str(ok), "-", "-"])
    rows.append(
        [
            "model file size",
            f"model.skops {main['model_skops_bytes'] / 2**20:.2f} MiB "
            f"(package {main['package_bytes'] / 2**20:.2f} MiB)",
            f"model.skops {ml['skops_bytes'] / 2**20:.2f} MiB; model.pkl {ml['cloudpickle_bytes'] / 2**20:.2f} MiB"
            if ml
            else "-",
            "-",
            "-",
        ]
    )
    if ml:
        same = ml["model_check"] == lo["model_check"]
        rows.append(
            [
                "same forests on both sides (digest of seed 1's predict_proba)",
                lo["model_check"],
                ml["model_check"],
                "-",
                fmt_met(same),
            ]
        )
    rows.append(noise_row(phase_noises(lo), str(ml["noise"]["other_cpu_share"]) if ml else "-"))
    return rows, ratios


def breakdown_tables(breakdown: dict[str, Any]) -> str:
    """The register breakdown, then the load breakdown ((b) and (c) side by side), as markdown."""

    def names(parts: list[dict[str, Any]]) -> dict[str, str]:
        return {p["key"]: p["part"] for p in parts}

    def calls(p: dict[str, Any]) -> str:
        return "-" if p["calls"] is None else f"{p['calls']:g}"

    reg = breakdown["register"]
    label = names(reg)
    rows = [
        [label.get(p["key"], p["part"]), label.get(p["within"], "-"), f"{p['ms']:.2f}", calls(p)] for p in reg
    ]
    out = markdown(
        rows, ["register: part (timers, no profiler)", "within", "ms per register (median)", "calls"]
    )
    warm, cold = breakdown["load_package"], breakdown["load_cold"]
    label = names(cold)
    warm_ms = {p["key"]: p["ms"] for p in warm}
    rows = [
        [
            label.get(p["key"], p["part"]),
            label.get(p["within"], "-"),
            f"{warm_ms[p['key']]:.2f}" if p["key"] in warm_ms else "-",
            f"{p['ms']:.2f}",
            calls(p),
        ]
        for p in cold
    ]
    head = [
        "load: part (timers, no profiler)",
        "within",
        "ms (median), (b) package on disk",
        "ms (median), (c) cold",
        "calls (c)",
    ]
    return out + "\n\n" + markdown(rows, head)


# -- main --------------------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="distinct models registered, timed (median)")
    ap.add_argument("--dedup", type=int, default=3, help="registrations of an already registered model")
    ap.add_argument("--warm-loads", type=int, default=50, help="loads from the in-process memo")
    ap.add_argument("--mlflow-default-versions", type=int, default=2, help="MLflow log_model with defaults")
    ap.add_argument("--no-mlflow", action="store_true", help="LoopML only")
    ap.add_argument("--quick", action="store_true", help="2 models a side (smoke test)")
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/registry.json")
    ap.add_argument(
        "--profile", choices=PROFILE_TARGETS, help="run LoopML's part only, that part under cProfile"
    )
    ap.add_argument("--profile-top", type=int, default=30)
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.dedup, args.warm_loads, args.mlflow_default_versions = 2, 1, 10, 1
    return args


def run_profile(args: argparse.Namespace) -> None:
    profiler = profile_only(args.profile)
    X, _, models, _ = workload(args.repeats)
    with onnx_verification(False):  # as in the full run: the ONNX verification is measured apart
        if args.profile == "register-run":
            result = bench_register_in_run(X, models)
        else:
            result = bench_register_and_load(X, models, 0, 1)
    print(json.dumps(result, default=str))
    title = f"'{args.profile}' ({args.repeats} calls)"
    save_profile(profiler, f"profile-registry-{args.profile}", title, args.profile_top)


def main() -> None:
    args = parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    if args.profile:
        run_profile(args)
        return
    started = datetime.now(UTC).isoformat(timespec="seconds")
    source_before = source_state()
    lo: dict[str, Any] = {}
    print("training the forests ...", file=sys.stderr, flush=True)
    X, _, models, train_s = workload(args.repeats)
    lo["train_s"] = round(train_s, 3)
    lo["model_check"] = _model_check(models[1], X)
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("register", lambda: bench_register_and_load(X, models, args.dedup, args.warm_loads)),
        ("register_run", lambda: bench_register_in_run(X, models)),
        ("breakdown", lambda: bench_breakdown(X, models)),
    ]
    jobs.append(("onnx", lambda: bench_onnx(X, models)))
    lo["onnx_wiring"] = onnx_wiring()
    for name, job in jobs:
        print(f"LoopML {name} ...", file=sys.stderr, flush=True)

        def verified_apart(job: Callable[[], dict[str, Any]] = job, name: str = name) -> dict[str, Any]:
            with contextlib.nullcontext() if name == "onnx" else onnx_verification(False):
                return job()

        lo[name] = with_noise(verified_apart)
    ml = optional_peer(
        "MLflow",
        PEERS_PYTHON,
        lambda: run_mlflow(args.repeats, args.mlflow_default_versions, args.repeats),
        skip=args.no_mlflow,
    )
    if ml is not None and "error" in ml:
        ml = None
    rows, ratios = build_table(lo, ml)
    table = markdown(rows, ["operation", "LoopML", "MLflow", "MLflow / LoopML", "target met?"])
    parts = breakdown_tables(lo["breakdown"])
    print(table)
    print()
    print(parts)
    source_after = source_state()
    record = {
        "bench": "registry",
        "started": started,
        "machine": machine_info(),
        "versions": {
            **versions("loopml", "scikit-learn", "skops", "numpy"),
            "mlflow": ml["versions"] if ml else None,
        },
        "source": source_before,
        "source_unchanged_during_run": source_before["src_tree_blake3"] == source_after["src_tree_blake3"],
        "config": run_config(args),
        "workload": {"data": DATA, "forest": FOREST},
        "ratios": ratios,
        "loopml": lo,
        "mlflow": ml,
        "table": table,
        "breakdown_table": parts,
    }
    if not args.no_save:
        append_result("registry", record)


if __name__ == "__main__":
    main()
