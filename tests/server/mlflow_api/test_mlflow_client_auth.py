"""How the unmodified `mlflow` client authenticates to the LoopML team server (LoopML only: the MLflow server
of this suite runs without authentication, as MLflow does by default).

The client sends `MLFLOW_TRACKING_TOKEN` as `Authorization: Bearer <token>`, and `MLFLOW_TRACKING_USERNAME` +
`MLFLOW_TRACKING_PASSWORD` as HTTP basic authentication; LoopML takes a user's token as the password. A 401 from
the server reaches the caller as an `MlflowException` with error_code UNAUTHENTICATED (what the client makes of
any HTTP 401, with or without a JSON body naming that code).
"""

from __future__ import annotations

import httpx

from loopml.tracking.client import Client
from mlflow_client import Target, run_client

LOG_A_RUN = """
import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("compat-auth")
with mlflow.start_run(run_name="{name}") as run:
    mlflow.log_param("how", "{name}")
report({{"run_id": run.info.run_id, "params": MlflowClient().get_run(run.info.run_id).data.params}})
"""

REFUSED = """
import mlflow
from mlflow import MlflowClient

report({
    "create": error_code(mlflow.create_experiment, "compat-auth-refused"),
    "get_run": error_code(MlflowClient().get_run, "0" * 32),
})
"""


def test_token_and_basic_authentication(loopml_target: Target) -> None:
    target = loopml_target  # LoopML's accounts: the suite's MLflow server runs without authentication
    assert target.token is not None
    with_token = run_client(
        LOG_A_RUN.format(name="token"), tracking_uri=target.url, env={"MLFLOW_TRACKING_TOKEN": target.token}
    )
    basic = {"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": target.token}
    with_password = run_client(LOG_A_RUN.format(name="basic"), tracking_uri=target.url, env=basic)
    assert with_token["params"] == {"how": "token"}
    assert with_password["params"] == {"how": "basic"}
    client = Client(target.loopml)
    assert client.get_run(with_token["run_id"]).params == {"how": "token"}
    assert client.get_run(with_password["run_id"]).params == {"how": "basic"}


def test_missing_or_wrong_credentials_are_refused(loopml_target: Target) -> None:
    target = loopml_target
    assert target.token is not None
    # Two requests per script, seven failed authentications in all: under the server's limit of ten a minute.
    refused = {"create": "UNAUTHENTICATED", "get_run": "UNAUTHENTICATED"}
    assert run_client(REFUSED, tracking_uri=target.url) == refused
    assert (
        run_client(REFUSED, tracking_uri=target.url, env={"MLFLOW_TRACKING_TOKEN": "not-a-token"}) == refused
    )
    wrong_password = {"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": "not-a-token"}
    assert run_client(REFUSED, tracking_uri=target.url, env=wrong_password) == refused
    # On the wire: HTTP 401 with a JSON error body.
    answer = httpx.get(
        f"{target.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "compat-auth"},
        trust_env=False,
    )
    assert answer.status_code == 401
    assert answer.json()["error_code"] == "UNAUTHENTICATED"
    assert "compat-auth-refused" not in {e.name for e in Client(target.loopml).list_experiments()}
