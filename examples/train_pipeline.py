"""An example training pipeline: load -> clean -> split -> features -> train -> evaluate, on built-in data.

loopml pipeline run examples/train_pipeline.py:breast_cancer -p C=0.5
loopml pipeline run examples/train_pipeline.py:breast_cancer -p C=0.5     # fully cached
python examples/train_pipeline.py                                         # a parallel sweep over C
"""

from __future__ import annotations

from typing import Any

import loopml
from loopml.pipelines import library as lib
from loopml.pipelines.sweep import sweep


@loopml.pipeline(experiment="breast-cancer-pipeline")
def breast_cancer(
    estimator: str = "LogisticRegression", C: float = 1.0, test_size: float = 0.25, seed: int = 0
) -> Any:
    frame = lib.load_builtin("breast_cancer")
    cleaned, _report = lib.clean_data(frame, target="target")
    train, test = lib.split_data(
        cleaned, target="target", test_size=test_size, seed=seed, register_as="breast_cancer_holdout"
    )
    features = lib.build_features(train, target="target")
    model = lib.train_model(
        train, target="target", estimator=estimator, params={"C": C, "max_iter": 5000}, features=features
    )
    evaluation = lib.evaluate_model(model, test, target="target")
    version = lib.register_model(model, train, name="breast_cancer", target="target")
    return {"evaluation": evaluation, "model": version}


if __name__ == "__main__":
    result = sweep(
        breast_cancer, {"C": [0.01, 0.1, 1.0, 10.0]}, metric="evaluation.metrics.roc_auc", mode="max"
    )
    for trial in result.trials:
        print(f"C={trial.params['C']:<6} roc_auc={trial.value}")
    print(f"best: C={result.best.params['C']} roc_auc={result.best.value:.4f} (run {result.best.run_id})")
