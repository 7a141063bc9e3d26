"""MLflow compatibility: what MLflow's client logs that LoopML has no native concept for (MLflow 3's logged
models), turning an MLflow model folder into a LoopML model version, and `loopml import mlflow`.

The HTTP side (MLflow's REST API on the team server) is `loopml.server.mlflow_api`, a thin shell over this
package and the tracking and registry stores.
"""
