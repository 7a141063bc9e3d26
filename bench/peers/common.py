"""Small helpers shared by the peer benchmark scripts.

Only the standard library and numpy are used here so that the same helpers can
be imported by the benchmarks of any tool (peers or our own platform).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import contextmanager

# Benchmarks must not phone home (and this machine has no internet): switch off
# MLflow's usage telemetry (on by default in MLflow 3) and generic trackers.
# Set before any benchmark imports mlflow; inherited by servers they start.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def now() -> float:
    return time.perf_counter()


@contextmanager
def timer(out: dict, key: str):
    """Store the elapsed seconds of the with-block in out[key]."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        out[key] = round(time.perf_counter() - t0, 6)


def pct(values, q: float) -> float:
    """Percentile (0..100) with linear interpolation, no numpy needed."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * (q / 100.0)
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize_ms(seconds_list) -> dict:
    """Latency summary in milliseconds of a list of durations in seconds."""
    ms = [s * 1000.0 for s in seconds_list]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "mean_ms": round(statistics.fmean(ms), 4),
        "p50_ms": round(pct(ms, 50), 4),
        "p90_ms": round(pct(ms, 90), 4),
        "p99_ms": round(pct(ms, 99), 4),
        "max_ms": round(max(ms), 4),
    }


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return float("nan")


def peak_rss_mib() -> float:
    """Peak RSS (high-water mark) of this process in MiB (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM, and so ru_maxrss) to its current RSS.

    Linux >= 4.0: writing "5" to /proc/self/clear_refs. Lets a benchmark measure
    the peak of one operation after a setup step that had a higher transient peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_info() -> dict:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }


def versions(*dists: str) -> dict:
    from importlib import metadata

    out = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def emit(result: dict) -> None:
    """Print exactly one JSON line on stdout (the script's result)."""
    sys.stdout.write(json.dumps(result, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def train_breast_cancer_lr(seed: int = 0):
    """The reference model used by registry and serving benchmarks.

    sklearn StandardScaler + LogisticRegression (one Pipeline) on sklearn's
    bundled breast_cancer data (569 rows x 30 float features, no download).
    The scaler makes lbfgs converge in ~20 iterations (unscaled it needs ~2300
    iterations and ~10 s here). Trained on a pandas DataFrame so that the
    feature names travel into the model signature.
    """
    import warnings

    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model, X, y
