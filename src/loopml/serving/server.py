"""What every prediction endpoint does, whatever its wire format: admit, decode, validate, predict, answer.

`Server` holds the model pool, the admission limits and the metrics of one app. An endpoint gives it the
model name (and version), the body and a `Codec`: how to turn the body into a frame and the outputs into a
response document. Decoding, validation and the model call all run in one worker thread, so the event loop
only moves bytes. Every answer names the version that produced it (`X-Model-Version`) and carries the
request id (`X-Request-Id`), which is also the prediction id of a one-row request.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from loopml.core.errors import Conflict, InvalidInput, LoopMLError
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.serving.batching import BatchPolicy, MicroBatcher
from loopml.serving.limits import Admission
from loopml.serving.metrics import ServingMetrics
from loopml.serving.pool import ModelPool, Route, ServedModel
from loopml.serving.predictor import PREDICTION, ValidationPolicy
from loopml.serving.rollout import Mirror, Watch, choose, mirror

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
BREACH_USER = "loopml-serve"


class ModelFailed(LoopMLError):
    """The model raised on input that passed validation (a bug or a limit of the model, not of the request)."""

    code = "model_failed"
    http_status = 500


@dataclass(frozen=True)
class ServeOptions:
    """Limits and policies of a serving app (every field has a safe default)."""

    max_body_bytes: int = 16 * 2**20
    max_concurrency: int = 4
    max_queue: int = 256
    timeout_s: float = 30.0
    poll_s: float = 2.0
    api_keys: tuple[str, ...] = ()
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)
    batching: Mapping[str, BatchPolicy] = field(default_factory=dict)  # model name -> opt-in micro-batching
    log_predictions: bool = True
    redact: tuple[str, ...] = ()  # input columns left out of the prediction log
    hash_columns: tuple[str, ...] = ()  # input columns logged as keyed digests
    log_segment_s: float = 60.0  # a prediction log segment is written at most this long after it opened

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_concurrency"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise InvalidInput(f"max_queue must be 0 or more, got {self.max_queue!r}")
        if not self.log_segment_s > 0:
            raise InvalidInput(f"log_segment_s must be positive, got {self.log_segment_s!r}")
        if not self.timeout_s > 0:
            raise InvalidInput(f"timeout_s must be positive, got {self.timeout_s!r}")
        if any(not isinstance(k, str) or len(k) < 16 for k in self.api_keys):
            raise InvalidInput("API keys must be strings of at least 16 characters")


@dataclass(frozen=True)
class Decoded:
    """A request turned into rows: the frame, the ids the client chose (if any) and what to send back."""

    frame: pd.DataFrame
    prediction_ids: list[str] | None = None
    probabilities: bool = True
    context: Any = None


@dataclass(frozen=True)
class Codec:
    """One wire format: `decode(body, served)` and `encode(outputs, served, decoded, request_id)`."""

    decode: Callable[[bytes, ServedModel], Decoded]
    encode: Callable[[dict[str, np.ndarray], ServedModel, Decoded, str], Any]


@dataclass(frozen=True)
class Answer:
    """A response document and the version that produced it."""

    document: Any
    served: ServedModel
    request_id: str
    rows: int
    role: str  # champion | challenger | pinned


INLINE_MAX_BODY = 16 * 1024  # bytes: larger bodies always go to a worker thread
INLINE_MAX_S = 0.0005  # a version whose requests take less than this (moving average) runs in the event loop


class Costs:
    """Moving average of the time one request of each version takes, to run the cheap ones inline.

    A request to a worker thread costs ~0.15 ms more than running it in the event loop; for a fast model on
    a small body that is a third of the whole request. A version starts on threads and moves to the loop
    only once its requests are measured cheap; one slow request (a larger batch) moves it back.
    """

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def observe(self, version_id: str, seconds: float) -> None:
        """Add one request's time (atomic enough: a lost update only delays the switch by a request)."""
        old = self._seconds.get(version_id)
        self._seconds[version_id] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def cheap(self, version_id: str) -> bool:
        """True when the version's requests take under `INLINE_MAX_S` on average."""
        return self._seconds.get(version_id, INLINE_MAX_S) < INLINE_MAX_S


class Server:
    """The pool, limits, routing and metrics behind one app's endpoints."""

    def __init__(self, pool: ModelPool, options: ServeOptions) -> None:
        self.pool = pool
        self.options = options
        self.admission = Admission(
            max_concurrency=options.max_concurrency, max_queue=options.max_queue, timeout_s=options.timeout_s
        )
        self.metrics = ServingMetrics(
            queue_depth=lambda: self.admission.waiting, in_flight=lambda: self.admission.admitted
        )
        self.watch = Watch(self._breached)
        self.mirror = Mirror()
        self._batchers: dict[str, MicroBatcher] = {}  # version id -> its batcher
        self._costs = Costs()
        self.log: PredictionLog | None = None
        if options.log_predictions:
            self.log = PredictionLog(
                pool.tracker,
                redact=options.redact,
                hash=options.hash_columns,
                max_age_s=options.log_segment_s,
            )
        self.metrics.watch_log(self.log)

    def close(self) -> None:
        """Stop polling, finish queued shadow predictions and write the open prediction log segments."""
        self.pool.close()
        self.mirror.close()
        if self.log is not None:
            self.log.close()

    async def predict(
        self, name: str, version: int | None, body: bytes, codec: Codec, headers: Mapping[str, str]
    ) -> Answer:
        """Decode, validate and predict `body` for model `name` in a worker thread."""
        request_id = request_id_of(headers)
        route = self.pool.route(name)
        if version is None:
            served, role = choose(route, headers)
            shadow = mirror(route, headers)
        else:
            served, role, shadow = self.pool.get(name, version), "pinned", None

        def prepare() -> tuple[Decoded, pd.DataFrame]:
            decoded = codec.decode(body, served)
            if len(decoded.frame) == 0:
                raise InvalidInput("the request holds no rows; send at least one")
            return decoded, served.predictor.validate(decoded.frame)

        received = time.time()

        def finish(decoded: Decoded, frame: pd.DataFrame, outputs: dict[str, np.ndarray]) -> Answer:
            self.metrics.rows.labels(served.name, str(served.number)).observe(len(frame))
            ids = row_ids(request_id, len(frame), decoded.prediction_ids)
            self._log(served, route=role, ids=ids, frame=frame, outputs=outputs, received=received)
            if shadow is not None:
                self.mirror.submit(lambda: self._shadow(name, shadow, decoded, ids, received))
            document = codec.encode(outputs, served, decoded, request_id)
            self._count(served, received, 200)
            return Answer(document, served, request_id, len(frame), role)

        policy = self.options.batching.get(name)
        if policy is not None:
            try:
                decoded, frame = await self.admission.run(prepare)
                outputs = await self._batcher(served, policy).predict(frame)
            except Exception as error:
                self._count(served, received, _status(error))
                raise
            if not decoded.probabilities:
                outputs = {PREDICTION: outputs[PREDICTION]}
            return finish(decoded, frame, outputs)

        def work() -> Answer:
            started = time.perf_counter()
            decoded, frame = prepare()
            outputs = self._run(route, served, frame, probabilities=decoded.probabilities)
            answer = finish(decoded, frame, outputs)
            self._costs.observe(served.version.version_id, time.perf_counter() - started)
            return answer

        try:
            if len(body) <= INLINE_MAX_BODY and self._costs.cheap(served.version.version_id):
                return work()  # cheaper than the hop to a worker thread, and too short to stall the loop
            return await self.admission.run(work)
        except Exception as error:
            self._count(served, received, _status(error))
            raise

    def _count(self, served: ServedModel, received: float, status: int) -> None:
        """Count a request routed to `served` by its status: the error rate monitoring reports per window."""
        if self.log is not None:
            self.log.count_request(served.name, served.number, int(received * 1000), status)

    def _batcher(self, served: ServedModel, policy: BatchPolicy) -> MicroBatcher:
        batcher = self._batchers.get(served.version.version_id)
        if batcher is None:

            async def run(frame: pd.DataFrame) -> dict[str, np.ndarray]:
                route = self.pool.route(served.name)  # the route now, not when the first request came
                return await self.admission.run(lambda: self._run(route, served, frame, probabilities=True))

            batcher = self._batchers.setdefault(served.version.version_id, MicroBatcher(policy, run))
        return batcher

    def _run(
        self, route: Route, served: ServedModel, frame: pd.DataFrame, *, probabilities: bool
    ) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            outputs = served.predictor.predict(frame, probabilities=probabilities)
        except Exception as error:
            self.watch.record(route, served, False, (time.perf_counter() - start) * 1000)
            if isinstance(error, LoopMLError):
                raise
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelFailed(f"{served.version.ref} failed on this input: {first}") from error
        self.watch.record(route, served, True, (time.perf_counter() - start) * 1000)
        return outputs

    def _log(
        self,
        served: ServedModel,
        *,
        route: str,
        ids: list[str],
        frame: pd.DataFrame,
        outputs: dict[str, np.ndarray],
        received: float,
    ) -> None:
        if self.log is None:
            return
        batch = PredictionBatch(
            model=served.name,
            version=served.number,
            route=route,
            prediction_ids=ids,
            inputs=frame,
            outputs=outputs,
            time_ms=int(received * 1000),
            latency_ms=(time.time() - received) * 1000,
        )
        self.log.append(batch)  # never blocks or raises: a full queue drops and counts

    def _shadow(
        self, name: str, shadow: ServedModel, decoded: Decoded, ids: list[str], received: float
    ) -> None:
        route = self.pool.route(name)
        try:
            frame = shadow.predictor.validate(decoded.frame)
            outputs = self._run(route, shadow, frame, probabilities=True)
            self._log(shadow, route="shadow", ids=ids, frame=frame, outputs=outputs, received=received)
            self._count(shadow, received, 200)
        except LoopMLError as error:  # the champion answered this request, so the challenger failed it
            self._count(shadow, received, error.http_status)
            if not isinstance(error, ModelFailed):
                self.watch.record(route, shadow, False, 0.0)

    def _breached(self, route: Route, evidence: dict[str, Any]) -> None:
        """Take the challenger out (share 0, with the evidence); a newer change by someone else stands."""
        deployment = route.deployment
        try:
            self.pool.deployments.set(
                replace(deployment, share=0.0),
                user=BREACH_USER,
                kind="limit_breached",
                detail=evidence,
                expected_revision=deployment.revision,
            )
        except Conflict:
            log.info("deployment of %s changed meanwhile; leaving it as it is", deployment.model)
        except LoopMLError as error:
            log.warning("cannot record the breach of %s: %s", deployment.model, error.message)
        self.pool.refresh()


def _status(error: Exception) -> int:
    """The HTTP status a failed request is answered with."""
    return error.http_status if isinstance(error, LoopMLError) else 500


def request_id_of(headers: Mapping[str, str]) -> str:
    """The client's id (`X-Prediction-Id`, else `X-Request-Id`) or a new one; `InvalidInput` if malformed."""
    given = headers.get("x-prediction-id") or headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex
    if not _ID.match(given):
        raise InvalidInput(
            "X-Prediction-Id / X-Request-Id must be 1-128 characters of letters, digits, . _ : -"
        )
    return given


def row_ids(request_id: str, rows: int, given: list[str] | None) -> list[str]:
    """Prediction ids of a request's rows: the client's, else the request id (one row) or `<id>-<row>`."""
    if given is not None:
        return given
    return [request_id] if rows == 1 else [f"{request_id}-{i}" for i in range(rows)]


def error_document(error: LoopMLError) -> dict[str, Any]:
    """The JSON body of an error: `error` (the message, as OIP asks), `code`, and `problems` when listed."""
    document: dict[str, Any] = {"error": error.message, "code": error.code}
    violations = getattr(error, "violations", None)
    if violations:
        document["problems"] = [
            {"column": v.column, "problem": v.problem, "detail": v.detail} for v in violations
        ]
    return document


def dumps(document: Any) -> bytes:
    """Compact JSON (orjson when installed: NaN is written as null, as JSON has no NaN)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - the serve extra is installed where tests run
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
