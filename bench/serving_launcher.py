"""Run LoopML's model server as `loopml serve` does, with timers around its parts: `bench/serving.py --profile`.

    cd PROJECT && .venv/bin/python bench/serving_launcher.py '{"refs": ["lr@champion"], "port": 8000, ...}'

It builds the same app (`loopml.serving.app.create_app` with `ServeOptions`) and runs uvicorn with the same
settings as `loopml serve` (httptools, uvloop, no access log, 127.0.0.1). Before that it wraps, in this process
only (src/ is untouched), the functions a prediction request passes through with timers: the whole ASGI
request, the route handler, admission (worker-thread hop), body decoding (JSON parse, frame building), the
signature check, the model call (and, for the ONNX copy, building its input tensors and ONNX Runtime itself),
the output lists and the response JSON. With `"cprofile": PATH`, every thread is also profiled (cProfile).

SIGUSR1 clears what was gathered (after the warm-up), SIGUSR2 writes it: the timers as JSON to the config's
`parts` path, the merged profile to `cprofile`. The bench sends both around the measured requests.
"""

from __future__ import annotations

import cProfile
import functools
import inspect
import json
import pstats
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

now = time.perf_counter
_samples: dict[str, list[float]] = defaultdict(list)  # part -> seconds per call (list.append is atomic)
_profilers: list[cProfile.Profile] = []


def _timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = now()
            try:
                return await func(*args, **kwargs)
            finally:
                _samples[name].append(now() - start)

        return timed_async

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return func(*args, **kwargs)
        finally:
            _samples[name].append(now() - start)

    return timed


def _wrap(owner: Any, attribute: str, name: str) -> None:
    setattr(owner, attribute, _timed(name, getattr(owner, attribute)))


def instrument() -> None:
    """Timers around the parts of a prediction request (module globals and class attributes)."""
    from loopml.registry import flavor_onnx, signature_check
    from loopml.serving import app, codecs, formats, limits, predictor, server

    _wrap(app, "_predict", "route handler (_predict)")
    _wrap(server.Server, "predict", "Server.predict (admit, thread hop, work)")
    _wrap(limits.Admission, "run", "Admission.run (thread hop + work)")
    _wrap(codecs, "parse_json", "decode: JSON parse")
    _wrap(codecs, "mlflow_frame", "decode: /invocations body -> frame (parse included)")
    _wrap(codecs, "oip_frame", "decode: OIP tensors -> frame")
    _wrap(codecs, "records_frame", "decode: records -> frame")
    _wrap(signature_check, "_inspect", "validate: signature inspection")
    _wrap(predictor.Predictor, "validate", "validate: signature check (total)")
    _wrap(predictor.Predictor, "predict", "predict: Predictor.predict (total)")
    _wrap(flavor_onnx.OnnxModel, "feeds", "predict: ONNX input tensors from the frame")
    _wrap(flavor_onnx.OnnxModel, "run", "predict: OnnxModel.run (feeds + onnxruntime)")
    _wrap(formats, "column_list", "encode: output column to JSON list")
    _wrap(app, "dumps", "encode: response JSON (dumps)")
    _wrap(server, "request_id_of", "request id")


class AsgiTimer:
    """The whole request inside the app: from the ASGI call until the response body is sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = now()
        await self.app(scope, receive, send)
        _samples["ASGI app (whole request in the app)"].append(now() - start)


def _profile_thread(*_: Any) -> None:
    """threading.setprofile hook: the first event of a new thread starts that thread's own profiler."""
    profiler = cProfile.Profile()
    _profilers.append(profiler)
    profiler.enable()  # replaces this hook for the thread


def _clear(*_: Any) -> None:
    _samples.clear()
    for profiler in list(_profilers):
        profiler.clear()


def _dump(config: dict[str, Any]) -> None:
    parts = {
        name: {
            "calls": len(values),
            "median_ms": round(statistics.median(values) * 1000, 4),
            "mean_ms": round(statistics.fmean(values) * 1000, 4),
            "total_s": round(sum(values), 4),
        }
        for name, values in list(_samples.items())
        if values
    }
    with open(config["parts"], "w") as f:
        json.dump(parts, f)
    if config.get("cprofile") and _profilers:
        stats = pstats.Stats(_profilers[0])  # once, at the end: this stops the profilers' bookkeeping
        for profiler in _profilers[1:]:
            stats.add(profiler)
        stats.dump_stats(config["cprofile"])


def main() -> None:
    config = json.loads(sys.argv[1])
    if config.get("cprofile"):
        main_profiler = cProfile.Profile()
        _profilers.append(main_profiler)
        threading.setprofile(_profile_thread)
        main_profiler.enable()
    import uvicorn

    from loopml.serving.app import create_app
    from loopml.serving.server import ServeOptions

    instrument()
    app = create_app(config["refs"], options=ServeOptions(**config.get("options", {})))
    signal.signal(signal.SIGUSR1, _clear)
    signal.signal(signal.SIGUSR2, lambda *_: _dump(config))
    print(
        f"serving {config['refs']} on 127.0.0.1:{config['port']} (instrumented)", file=sys.stderr, flush=True
    )
    uvicorn.run(
        AsgiTimer(app),
        host="127.0.0.1",
        port=config["port"],
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
    )


if __name__ == "__main__":
    main()
