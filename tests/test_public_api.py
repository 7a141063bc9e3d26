"""The public names of `loopml` are pinned: adding or removing one is a deliberate change."""

import loopml


def test_all_is_pinned_and_importable() -> None:
    assert sorted(loopml.__all__) == sorted(
        [
            "ActiveRun", "Artifact", "Client", "Conflict", "DatasetRef", "Experiment", "InvalidFilter", "InvalidInput",
            "LoopMLError", "Metric", "NotFound", "ParamConflict", "PipelineFailed", "PipelineResult", "Run", "RunInput", "RunPage", "RunStatus",
            "Settings", "StoreError", "Tracker", "__version__", "active_run", "autolog", "configure", "datasets", "end_run",
            "flush", "load_settings", "log_artifact", "log_artifacts", "log_config", "log_metric", "log_metrics", "log_param",
            "log_params", "models", "monitoring", "pipeline", "set_tag", "set_tags", "start_run", "step", "sweep",
        ]
    )  # fmt: skip
    for name in loopml.__all__:
        assert hasattr(loopml, name), name
