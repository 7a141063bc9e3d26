"""Serving models: the HTTP app (Open Inference Protocol V2, MLflow's /invocations, /predict), the model pool,
deployments (canary, shadow), batch scoring and deployment manifests."""
