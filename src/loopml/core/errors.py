"""One exception root for LoopML; each error has a stable code, an HTTP status and a CLI exit code.

```
LoopMLError                      code                HTTP  exit
├── InvalidInput                 invalid_input       400   2
│   ├── InvalidFilter            invalid_filter      400   2
│   ├── PathEscapes              path_escapes        400   2
│   ├── SignatureMismatch        signature_mismatch  400   2
│   ├── UntrustedArtifact        untrusted_artifact  400   2
│   ├── NotCanonical             not_canonical       400   2
│   ├── PayloadTooLarge          payload_too_large   413   2
│   ├── UnsupportedMediaType     unsupported_media_type 415 2
│   ├── Unserializable           unserializable      400   2
│   ├── HandleMisuse             handle_misuse       400   2
│   └── GraphError               graph_error         400   2
├── Unauthenticated              unauthenticated     401   2
├── Forbidden                    forbidden           403   2
├── NotFound                     not_found           404   2
├── Conflict                     conflict            409   2
│   └── ParamConflict            param_conflict      409   2
├── TaskKilled                   task_killed         500   1
├── WorkerLost                   worker_lost         500   1
├── StepTimeout                  step_timeout        500   1
├── PipelineFailed               pipeline_failed     500   1
├── PromotionRefused             promotion_refused   409   1
├── ScoringFailed                scoring_failed      422   1
├── ModelFailed                  model_failed        500   1
├── PredictionTimeout            prediction_timeout  504   1
├── Overloaded                   overloaded          503   3
├── RerunFailed                  rerun_failed        500   1
└── StoreError                   store_error         500   3
    ├── StoreCorrupt             store_corrupt       500   3
    ├── ForeignDatabase          foreign_database    500   3
    ├── SchemaMismatch           schema_mismatch     500   3
    ├── StoreBusy                store_busy          503   3
    └── RemoteError              remote_error        502   3
```
The classes not defined here sit beside the code that raises them: `SignatureMismatch` in
`registry.signature_check`, `UntrustedArtifact` in `registry.skops_io`, `NotCanonical` in
`registry.model_hash`, `Unserializable` in `pipelines.serializer`, `HandleMisuse` and `GraphError` in
`pipelines.graph`, `StepTimeout` and `PipelineFailed` in `pipelines.runner`, `RerunFailed` in
`pipelines.rerun`, `PromotionRefused` in `registry.promotion`, `TaskKilled` and `WorkerLost` in `core.executors`,
`PayloadTooLarge`, `Overloaded` and `PredictionTimeout` in `serving.limits`, `UnsupportedMediaType` in
`serving.codecs`, `ModelFailed` in `serving.server`, `ScoringFailed` in `serving.batch`.

Messages say what was wrong and what to do, in one line, so the CLI can print them as they are.
"""

from __future__ import annotations

from typing import ClassVar


class LoopMLError(Exception):
    """Root of every error LoopML raises on purpose."""

    code: ClassVar[str] = "loopml_error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(LoopMLError, ValueError):
    """A value given by the user is of the wrong type, out of range, too large or malformed."""

    code = "invalid_input"
    http_status = 400
    exit_code = 2


class InvalidFilter(InvalidInput):
    """A search filter or order-by expression does not parse; the message points at the offending token."""

    code = "invalid_filter"

    def __init__(self, message: str, *, text: str = "", position: int = -1) -> None:
        if text and position >= 0:
            message = f"{message}\n  {text}\n  {' ' * position}^"
        super().__init__(message)
        self.text = text
        self.position = position


class PathEscapes(InvalidInput):
    """A name or relative path would leave the folder it must stay in."""

    code = "path_escapes"


class Unauthenticated(LoopMLError):
    """No valid credentials: a missing, malformed, unknown, expired or revoked token."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 2


class Forbidden(LoopMLError):
    """Valid credentials without the role the action needs."""

    code = "forbidden"
    http_status = 403
    exit_code = 2


class NotFound(LoopMLError, LookupError):
    """An experiment, run, artifact or object does not exist."""

    code = "not_found"
    http_status = 404
    exit_code = 2


class Conflict(LoopMLError):
    """The request contradicts what the store already holds."""

    code = "conflict"
    http_status = 409
    exit_code = 2


class ParamConflict(Conflict):
    """A param was logged again in the same run with a different value."""

    code = "param_conflict"


class StoreError(LoopMLError):
    """The metadata database or the blob store cannot be used as it is."""

    code = "store_error"
    http_status = 500
    exit_code = 3


class StoreCorrupt(StoreError):
    """A file that should be a LoopML store is not readable as one."""

    code = "store_corrupt"


class ForeignDatabase(StoreError):
    """The database holds tables that are not LoopML's; it is refused and left untouched."""

    code = "foreign_database"


class SchemaMismatch(StoreError):
    """The database schema revision is not the one this LoopML version expects."""

    code = "schema_mismatch"


class StoreBusy(StoreError):
    """The database stayed locked by another process for longer than the configured wait."""

    code = "store_busy"
    http_status = 503


class RemoteError(StoreError):
    """A remote blob store (push/pull) refused the credentials, could not be reached or failed."""

    code = "remote_error"
    http_status = 502
