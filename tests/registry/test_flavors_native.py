"""Native flavors (ONNX, LightGBM, XGBoost) and ONNX acceleration: round trips, canonical hashes, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import loopml
from loopml.core.errors import InvalidInput
from loopml.registry.flavor import flavor_for, json_params
from loopml.registry.flavor_lightgbm import BoosterClassifier, BoosterRegressor, LightGBMFlavor
from loopml.registry.flavor_onnx import OnnxClassifier, OnnxFlavor, OnnxModel, serialize
from loopml.registry.flavor_xgboost import XGBoostFlavor
from loopml.registry.onnx_copy import OnnxOutcome, try_onnx_copy
from loopml.tracking.tracker import Tracker

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")
lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.dummy import DummyClassifier  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

ROWS = 160


def features(seed: int = 0, rows: int = ROWS) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 4))


def labels(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, 0] + x[:, 1] > 0, "fraud", "ok")


def frame(seed: int = 0, rows: int = ROWS) -> Any:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(100, 20, rows),
            "age": rng.normal(40, 10, rows),
            "country": rng.choice(["fr", "de", "it"], rows),
        }
    )


def lgbm_classifier(seed: int = 0) -> Any:
    x = features(seed)
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, deterministic=True, n_jobs=1, verbose=-1)
    return model.fit(x, labels(x))


def xgb_classifier(seed: int = 0) -> Any:
    x = features(seed)
    return xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(x, (x[:, 0] > 0).astype(int))


def onnx_logistic(seed: int = 0) -> Any:
    x = features(seed)
    model = LogisticRegression().fit(x, labels(x))
    return skl2onnx.to_onnx(model, x[:1].astype(np.float32)), model


def round_trip(flavor: Any, model: Any, folder: Path) -> Any:
    files = flavor.save(model, folder)
    assert all((folder / name).is_file() for name in files)
    return flavor.load(folder)


# flavor choice and lazy imports


def test_each_native_model_finds_its_flavor() -> None:
    x = features()
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, x[:, 0] > 0), 2)
    proto, _ = onnx_logistic()
    found = {
        "lightgbm": [
            lgbm_classifier(),
            lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(x, x[:, 0]),
            booster,
        ],
        "xgboost": [
            xgb_classifier(),
            xgb.XGBRegressor(n_estimators=2).fit(x, x[:, 0]),
            xgb_classifier().get_booster(),
        ],
        "onnx": [proto, OnnxModel.of(serialize(proto))],
    }
    for name, models in found.items():
        assert [flavor_for(model).name for model in models] == [name] * len(models)


def test_importing_the_flavors_imports_none_of_their_libraries() -> None:
    code = (
        "import sys\n"
        "import loopml.registry.flavor, loopml.registry.flavor_onnx, loopml.registry.flavor_lightgbm\n"
        "import loopml.registry.flavor_xgboost, loopml.registry.onnx_copy\n"
        "from loopml.registry.flavor import flavor_for\n"
        "class Model:\n"
        "    def predict(self, x): return x\n"
        "    def get_params(self): return {}\n"
        "flavor_for(Model())\n"
        "heavy = {'onnx', 'onnxruntime', 'skl2onnx', 'lightgbm', 'xgboost'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# LightGBM


def test_lgbm_classifier_loads_as_a_booster_classifier_predicting_the_same(tmp_path: Path) -> None:
    model, x = lgbm_classifier(), features(seed=5)
    loaded = round_trip(LightGBMFlavor(), model, tmp_path)
    assert type(loaded) is BoosterClassifier
    assert loaded.classes_.tolist() == ["fraud", "ok"]
    assert loaded.classes_.dtype == model.classes_.dtype
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.get_params()["num_leaves"] == 7
    assert loaded.n_features_in_ == 4
    assert LightGBMFlavor().content_hash(loaded) == LightGBMFlavor().content_hash(model)
    wrapper = json.loads((tmp_path / "wrapper.json").read_text())
    assert (wrapper["class"], wrapper["classes"]) == ("LGBMClassifier", ["fraud", "ok"])
    assert (tmp_path / "model.txt").read_text().startswith("tree\n")


def test_lgbm_multiclass_on_a_frame_with_a_categorical_column(tmp_path: Path) -> None:
    data = frame()
    data["country"] = data["country"].astype("category")
    target = np.digitize(data["amount"], [90, 110])
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, verbose=-1).fit(data, target)
    loaded = round_trip(LightGBMFlavor(), model, tmp_path)
    assert np.array_equal(loaded.predict(data), model.predict(data))
    assert np.array_equal(loaded.predict_proba(data), model.predict_proba(data))


def test_lgbm_regressor_and_booster_round_trip(tmp_path: Path) -> None:
    x = features()
    regressor = lgb.LGBMRegressor(n_estimators=5, num_leaves=7, verbose=-1).fit(x, x[:, 0] * 2)
    loaded = round_trip(LightGBMFlavor(), regressor, tmp_path / "regressor")
    assert type(loaded) is BoosterRegressor
    assert not hasattr(loaded, "predict_proba")
    assert np.array_equal(loaded.predict(x), regressor.predict(x))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(x, x[:, 1] > 0), 5
    )
    loaded_booster = round_trip(LightGBMFlavor(), booster, tmp_path / "booster")
    assert type(loaded_booster) is lgb.Booster
    assert np.array_equal(loaded_booster.predict(x), booster.predict(x))
    assert LightGBMFlavor().content_hash(loaded_booster) == LightGBMFlavor().content_hash(booster)


def test_lgbm_hash_is_equal_over_refits_and_differs_with_the_data() -> None:
    flavor = LightGBMFlavor()
    assert flavor.content_hash(lgbm_classifier()) == flavor.content_hash(lgbm_classifier())
    assert flavor.content_hash(lgbm_classifier()) != flavor.content_hash(lgbm_classifier(seed=1))


def test_lgbm_refuses_unfitted_models_and_custom_objectives(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not fitted"):
        LightGBMFlavor().save(lgb.LGBMClassifier(), tmp_path)

    def squared(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return y_pred - y_true, np.ones_like(y_pred)

    x = features()
    custom = lgb.LGBMRegressor(n_estimators=2, objective=squared, verbose=-1).fit(x, x[:, 0])
    with pytest.raises(InvalidInput, match=r"custom objective.*register model\.booster_"):
        LightGBMFlavor().save(custom, tmp_path)
    assert not (tmp_path / "model.txt").exists()


def test_lgbm_load_refuses_a_wrapper_file_naming_another_class(tmp_path: Path) -> None:
    LightGBMFlavor().save(lgbm_classifier(), tmp_path)
    wrapper = json.loads((tmp_path / "wrapper.json").read_text())
    (tmp_path / "wrapper.json").write_text(json.dumps({**wrapper, "class": "os:system"}))
    with pytest.raises(InvalidInput, match="'os:system', not one LoopML rebuilds"):
        LightGBMFlavor().load(tmp_path)


# XGBoost


def test_xgb_classifier_loads_as_itself_predicting_the_same(tmp_path: Path) -> None:
    model, x = xgb_classifier(), features(seed=5)
    loaded = round_trip(XGBoostFlavor(), model, tmp_path)
    assert type(loaded) is xgb.XGBClassifier
    assert loaded.classes_.tolist() == [0, 1]
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert (loaded.get_params()["max_depth"], loaded.get_params()["n_estimators"]) == (3, 5)
    assert XGBoostFlavor().content_hash(loaded) == XGBoostFlavor().content_hash(model)
    assert json.loads((tmp_path / "model.json").read_text())["learner"]


def test_xgb_regressor_keeps_its_missing_value_and_the_booster_round_trips(tmp_path: Path) -> None:
    x = features()
    x[::7, 2] = -1.0
    model = xgb.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1, missing=-1.0).fit(x, x[:, 0] + x[:, 2])
    loaded = round_trip(XGBoostFlavor(), model, tmp_path / "regressor")
    assert type(loaded) is xgb.XGBRegressor
    assert loaded.get_params()["missing"] == -1.0
    assert np.array_equal(loaded.predict(x), model.predict(x))
    booster = xgb_classifier().get_booster()
    loaded_booster = round_trip(XGBoostFlavor(), booster, tmp_path / "booster")
    assert type(loaded_booster) is xgb.Booster
    matrix = xgb.DMatrix(x)
    assert np.array_equal(loaded_booster.predict(matrix), booster.predict(matrix))
    assert XGBoostFlavor().content_hash(loaded_booster) == XGBoostFlavor().content_hash(booster)


def test_xgb_hash_is_equal_over_refits_and_differs_with_the_data_or_params() -> None:
    flavor = XGBoostFlavor()
    assert flavor.content_hash(xgb_classifier()) == flavor.content_hash(xgb_classifier())
    assert flavor.content_hash(xgb_classifier()) != flavor.content_hash(xgb_classifier(seed=1))
    x = features()
    y = (x[:, 0] > 0).astype(int)
    other_missing = xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1, missing=-1.0).fit(x, y)
    assert flavor.content_hash(other_missing) != flavor.content_hash(xgb_classifier())


def test_xgb_library_check_takes_xgboost_cpu_as_xgboost() -> None:
    version = xgb.__version__
    assert set(XGBoostFlavor().libraries()) & {"xgboost", "xgboost-cpu"}
    assert XGBoostFlavor().check_libraries({"xgboost": version, "xgboost-cpu": version}) == []
    (warning,) = XGBoostFlavor().check_libraries({"xgboost": "0.1"})
    assert "0.1" in warning
    assert version in warning


def test_xgb_refuses_an_unfitted_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not fitted"):
        XGBoostFlavor().save(xgb.XGBClassifier(), tmp_path)


# ONNX


def test_onnx_model_from_skl2onnx_predicts_as_the_logistic_regression(tmp_path: Path) -> None:
    proto, model = onnx_logistic()
    x = features(seed=5)
    loaded = round_trip(OnnxFlavor(), proto, tmp_path)
    assert isinstance(loaded, OnnxClassifier)
    assert loaded.classes_.tolist() == ["fraud", "ok"]  # from the ZipMap skl2onnx adds by default
    assert loaded.predict(x).tolist() == model.predict(x).tolist()
    assert np.allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-6)
    fresh = OnnxModel.of(proto.SerializeToString())
    assert np.array_equal(loaded.predict_proba(x), fresh.predict_proba(x))  # the same bytes, the same numbers
    assert OnnxFlavor().content_hash(loaded) == OnnxFlavor().content_hash(proto)
    assert (tmp_path / "model.onnx").read_bytes() == serialize(proto)


def test_onnx_model_with_one_input_per_column(tmp_path: Path) -> None:
    data = frame()
    pipeline = make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), ["amount", "age"]), ("cat", OneHotEncoder(), ["country"])]
        ),
        LogisticRegression(),
    ).fit(data, data["amount"] > 100)
    proto = skl2onnx.to_onnx(pipeline, data[:1], options={"zipmap": False})
    loaded = round_trip(OnnxFlavor(), proto, tmp_path)
    assert loaded.input_names == ["amount", "age", "country"]
    assert loaded.predict(data).tolist() == pipeline.predict(data).tolist()
    assert np.allclose(loaded.predict_proba(data[["country", "age", "amount"]]), pipeline.predict_proba(data))
    with pytest.raises(InvalidInput, match="has no country"):
        loaded.predict(data[["amount", "age"]])


def test_onnx_regressor_predicts_one_value_a_row(tmp_path: Path) -> None:
    x = features()
    model = LinearRegression().fit(x, x @ [1.0, 2.0, 0.0, -1.0])
    loaded = round_trip(OnnxFlavor(), skl2onnx.to_onnx(model, x[:1]), tmp_path)
    assert type(loaded) is OnnxModel
    assert not hasattr(loaded, "predict_proba")
    assert loaded.predict(x).shape == (ROWS,)
    assert np.allclose(loaded.predict(x), model.predict(x))
    with pytest.raises(InvalidInput, match="1-D array"):
        loaded.predict(x[0])


def test_onnx_hash_is_equal_over_refits_and_differs_with_the_data() -> None:
    flavor = OnnxFlavor()
    assert flavor.content_hash(onnx_logistic()[0]) == flavor.content_hash(onnx_logistic()[0])
    assert flavor.content_hash(onnx_logistic()[0]) != flavor.content_hash(onnx_logistic(seed=1)[0])


def test_onnx_refuses_tensors_in_external_files_and_bytes_that_are_not_onnx(tmp_path: Path) -> None:
    proto, _ = onnx_logistic()
    weights = onnx.helper.make_tensor("weights", onnx.TensorProto.FLOAT, [1], [0.0])
    weights.data_location = onnx.TensorProto.EXTERNAL
    weights.ClearField("float_data")
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    proto.graph.initializer.append(weights)
    with pytest.raises(InvalidInput, match=r"1 tensors \(weights\) in external files"):
        OnnxFlavor().save(proto, tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"\x80\x04 not a model")
    with pytest.raises(InvalidInput, match="not an ONNX model"):
        OnnxFlavor().load(tmp_path)


# ONNX acceleration


def test_onnx_copy_of_a_logistic_regression_and_a_forest_is_kept() -> None:
    x, validation = features(), features(seed=9, rows=1500)
    for model in (
        LogisticRegression().fit(x, labels(x)),
        RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, labels(x)),
    ):
        outcome = try_onnx_copy(model, sample=x, validation=validation)
        assert outcome.kept, outcome.reason
        assert outcome.reason.startswith("matched 1100 rows within rtol=0.0001, atol=1e-05")
        assert outcome.max_abs_diff is not None
        assert outcome.max_abs_diff < 1e-5
        assert outcome.onnx_bytes is not None
        copy = OnnxModel.of(outcome.onnx_bytes)
        assert copy.classes_.tolist() == ["fraud", "ok"]
        assert copy.predict(validation).tolist() == model.predict(validation).tolist()
        assert set(outcome.to_dict()) == {"kept", "reason", "max_abs_diff", "seconds"}


def test_onnx_copy_of_a_pipeline_on_a_mixed_frame_and_a_regressor() -> None:
    data = frame()
    pipeline = make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), ["amount", "age"]), ("cat", OneHotEncoder(), ["country"])]
        ),
        LogisticRegression(),
    ).fit(data, np.where(data["amount"] > 100, "high", "low"))
    outcome = try_onnx_copy(pipeline, sample=data, validation=frame(seed=3))
    assert outcome.kept, outcome.reason
    assert outcome.onnx_bytes is not None
    assert OnnxModel.of(outcome.onnx_bytes).input_names == ["amount", "age", "country"]
    numbers = data[["amount", "age"]]
    regressor = LinearRegression().fit(numbers, numbers["amount"] * 3 - numbers["age"])
    outcome = try_onnx_copy(regressor, sample=numbers, validation=numbers)
    assert outcome.kept, outcome.reason
    assert outcome.onnx_bytes is not None
    copy = OnnxModel.of(outcome.onnx_bytes)
    assert copy.input_names == ["X"]  # one 2-D input, fed the columns in training order
    assert np.allclose(copy.predict(numbers[["age", "amount"]]), regressor.predict(numbers))


def test_onnx_copy_is_refused_when_probabilities_differ_beyond_the_tolerance() -> None:
    x = features()
    forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, labels(x))
    outcome = try_onnx_copy(forest, sample=x, rtol=0, atol=0)  # ONNX computes forest probabilities in float32
    assert not outcome.kept
    assert outcome.onnx_bytes is None
    assert "probabilities differ beyond rtol=0, atol=0" in outcome.reason
    assert outcome.max_abs_diff is not None
    assert outcome.max_abs_diff > 0


def test_onnx_copy_is_refused_with_a_reason_for_what_skl2onnx_cannot_convert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = features()
    outcome = try_onnx_copy(DummyClassifier().fit(x, labels(x)), sample=x)
    assert isinstance(outcome, OnnxOutcome)
    assert (outcome.kept, outcome.onnx_bytes) == (False, None)
    assert "skl2onnx could not convert the sklearn.dummy.DummyClassifier" in outcome.reason
    assert "not a scikit-learn model" in try_onnx_copy(lgbm_classifier(), sample=x).reason
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # as if the onnx extra were not installed
    missing = try_onnx_copy(LogisticRegression().fit(x, labels(x)), sample=x)
    assert not missing.kept
    assert "pip install 'loopml[onnx]'" in missing.reason
    with pytest.raises(InvalidInput, match="rtol and atol must be >= 0"):
        try_onnx_copy(DummyClassifier(), sample=x, rtol=-1)


# through the registry


def test_native_models_register_load_and_are_recognised_again(sqlite_tracker: Tracker) -> None:
    data = frame()[["amount", "age"]]
    target = (data["amount"] > 100).astype(int)
    lgbm = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, deterministic=True, n_jobs=1, verbose=-1)
    logistic = LogisticRegression().fit(data, target)
    proto = skl2onnx.to_onnx(logistic, data.to_numpy()[:1], options={"zipmap": False})
    models = {
        "lightgbm": lgbm.fit(data, target),
        "xgboost": xgb.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(data, target),
        "onnx": OnnxModel.of(serialize(proto)),
    }
    for flavor, model in models.items():
        first = loopml.models.register(flavor, model, sample=data)
        assert first.version.flavor == flavor
        loaded = loopml.models.load(f"{flavor}@v1")
        assert np.array_equal(loaded.predict(data), model.predict(data))
        assert np.array_equal(loaded.predict_proba(data), model.predict_proba(data))
        again = loopml.models.register(flavor, loaded, sample=data)
        assert not again.created


def test_json_params_keep_what_json_reads_back_unchanged() -> None:
    kept, dropped = json_params(
        {"depth": 3, "rate": 0.1, "missing": float("nan"), "name": "x", "weights": {0: 1.0}, "pair": (1, 2)}
        | {"state": np.random.RandomState(0), "ok": {"a": [1, None, True]}, "big": np.int64(3)}
    )
    assert dropped == ["big", "pair", "state", "weights"]
    assert kept["missing"] != kept["missing"]  # NaN kept
    assert {k: v for k, v in kept.items() if k != "missing"} == {
        "depth": 3,
        "rate": 0.1,
        "name": "x",
        "ok": {"a": [1, None, True]},
    }
