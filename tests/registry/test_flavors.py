"""Model flavors: round trips, canonical content hashes, refusals of untrusted files and code, library checks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopml.core.errors import InvalidInput, NotFound
from loopml.registry.flavor import Flavor, flavor_for, flavor_named, flavor_names
from loopml.registry.flavor_python import PythonFlavor
from loopml.registry.flavor_sklearn import SklearnFlavor
from loopml.registry.skops_io import UntrustedArtifact

pytest.importorskip("sklearn")
pytest.importorskip("skops")
pd = pytest.importorskip("pandas")

# Fits the same forest in this process and in a fresh one, to show the hash does not depend on the process.
FIT_FOREST = """
import numpy as np
from sklearn.ensemble import RandomForestClassifier

rng = np.random.default_rng(7)
x = rng.normal(size=(80, 3))
y = (x[:, 0] + x[:, 1] > 0).astype(int)
forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=3).fit(x, y)
"""

THRESHOLD_MODULE = '''
"""Models of one's own class, written to a temporary folder by the test."""

import numpy as np


class Threshold:
    """Predicts 1 where one column exceeds a cut."""

    def __init__(self, *, column=0, cut=0.0, labels=None):
        self.column, self.cut, self.labels = column, cut, labels

    def get_params(self, deep=True):
        return {"column": self.column, "cut": self.cut, "labels": self.labels}

    def predict(self, x):
        return (np.asarray(x)[:, self.column] > self.cut).astype(int)

    def predict_proba(self, x):
        high = self.predict(x).astype(float)
        return np.column_stack([1 - high, high])


class Weights:
    """A linear score built from a dict, as to_dict/from_dict."""

    def __init__(self, weights):
        self.weights = list(weights)

    def to_dict(self):
        return {"weights": self.weights}

    @classmethod
    def from_dict(cls, data):
        return cls(data["weights"])

    def predict(self, x):
        return np.asarray(x) @ np.asarray(self.weights)


class Fitted:
    """Learns a mean that its params do not carry: saving it would lose the fit."""

    def __init__(self, shift=0.0):
        self.shift = shift

    def get_params(self):
        return {"shift": self.shift}

    def fit(self, x):
        self.mean_ = float(np.mean(x)) + self.shift
        return self

    def predict(self, x):
        return np.full(len(x), self.mean_)
'''


@pytest.fixture(scope="module")
def training() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {
            "size": rng.normal(size=60),
            "weight": rng.normal(size=60),
            "color": rng.choice(["red", "green", "blue"], size=60),
        }
    )
    y = (x["size"] + (x["color"] == "red") > 0.3).astype(int)
    return x, y


def forest(x: Any, y: Any, *, seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=seed).fit(
        x[["size", "weight"]], y
    )


def pipeline(x: Any, y: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [("num", StandardScaler(), ["size", "weight"]), ("cat", OneHotEncoder(), ["color"])]
    )
    return Pipeline([("features", columns), ("model", LogisticRegression(max_iter=1000))]).fit(x, y)


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A first-party module of model classes, importable by name for the duration of one test."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "loopml_test_user_models.py").write_text(THRESHOLD_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    import loopml_test_user_models  # type: ignore[import-not-found]

    yield loopml_test_user_models
    sys.modules.pop("loopml_test_user_models", None)


# round trips


def test_sklearn_forest_and_pipeline_predict_the_same_after_loading(
    training: tuple[Any, Any], tmp_path: Path
) -> None:
    x, y = training
    for name, model, features in [
        ("forest", forest(x, y), x[["size", "weight"]]),
        ("pipeline", pipeline(x, y), x),
    ]:
        flavor = flavor_for(model)
        assert isinstance(flavor, SklearnFlavor)
        assert flavor.save(model, tmp_path / name) == ["model.skops"]
        back = flavor_named("sklearn").load(tmp_path / name)
        assert type(back) is type(model)
        np.testing.assert_array_equal(back.predict(features), model.predict(features))
        np.testing.assert_array_equal(back.predict_proba(features), model.predict_proba(features))
        assert flavor.content_hash(back) == flavor.content_hash(model)


def test_python_flavor_round_trips_by_params_and_by_dict(user_models: Any, tmp_path: Path) -> None:
    x = np.array([[0.5, -1.0], [-0.2, 2.0], [3.0, 0.0]])
    for name, model in [
        ("threshold", user_models.Threshold(column=1, cut=0.5, labels=["no", "yes"])),
        ("weights", user_models.Weights([0.25, -1.5])),
    ]:
        flavor = flavor_for(model)
        assert isinstance(flavor, PythonFlavor)
        assert flavor.save(model, tmp_path / name) == ["python_model.json"]
        back = flavor.load(tmp_path / name, trusted=True)
        assert type(back) is type(model)
        np.testing.assert_array_equal(back.predict(x), model.predict(x))
        assert flavor.content_hash(back) == flavor.content_hash(model)
    document = json.loads((tmp_path / "threshold" / "python_model.json").read_text())
    assert document["class"] == "loopml_test_user_models:Threshold"
    assert document["params"] == {"column": 1, "cut": 0.5, "labels": ["no", "yes"]}


# canonical content hashes


def test_sklearn_hash_is_equal_over_refits_and_differs_with_the_data(training: tuple[Any, Any]) -> None:
    x, y = training
    flavor = flavor_named("sklearn")
    assert flavor.content_hash(forest(x, y)) == flavor.content_hash(forest(x, y))
    assert flavor.content_hash(pipeline(x, y)) == flavor.content_hash(pipeline(x, y))
    changed = x.copy()
    changed.loc[0, "size"] += 0.5
    assert flavor.content_hash(forest(x, y)) != flavor.content_hash(forest(changed, y))
    assert flavor.content_hash(pipeline(x, y)) != flavor.content_hash(pipeline(changed, y))
    assert flavor.content_hash(forest(x, y)) != flavor.content_hash(forest(x, y, seed=1))


def test_sklearn_hash_is_the_same_in_another_process(tmp_path: Path) -> None:
    scope: dict[str, Any] = {}
    exec(FIT_FOREST, scope)
    flavor = flavor_named("sklearn")
    flavor.save(scope["forest"], tmp_path / "forest")
    code = FIT_FOREST + textwrap.dedent(
        f"""
        from pathlib import Path
        from loopml.registry.flavor import flavor_named

        flavor = flavor_named("sklearn")
        print(flavor.content_hash(forest))
        print(flavor.content_hash(flavor.load(Path({str(tmp_path / "forest")!r}))))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [flavor.content_hash(scope["forest"])] * 2


def test_python_hash_follows_params_and_source(user_models: Any) -> None:
    flavor = flavor_named("python")
    first = flavor.content_hash(user_models.Threshold(cut=0.5))
    assert first == flavor.content_hash(user_models.Threshold(cut=0.5))
    assert first != flavor.content_hash(user_models.Threshold(cut=0.6))
    assert first != flavor.content_hash(user_models.Threshold(cut=0.5, labels=["a", "b"]))
    path = Path(user_models.__file__)
    path.write_text(path.read_text() + "\n# an edit\n")
    assert first != flavor.content_hash(user_models.Threshold(cut=0.5))


# refusals


def transform_twice(values: Any) -> Any:
    """A function from a module that is not on the skops allow-list."""
    return values * 2


def test_sklearn_load_refuses_a_file_naming_types_off_the_allow_list(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    flavor = flavor_named("sklearn")
    folder = tmp_path / "function"
    folder.mkdir()
    (folder / "model.skops").write_bytes(sio.dumps(FunctionTransformer(func=transform_twice)))
    name = f"{__name__}.transform_twice"
    with pytest.raises(UntrustedArtifact, match=rf"refused.*{name}") as caught:
        flavor.load(folder, trusted=True)  # `trusted` never widens the skops allow-list
    assert caught.value.types == (name,)

    # A valid model whose schema was edited to name os.system instead of LogisticRegression.
    valid = sio.dumps(LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1]))
    crafted = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(valid)) as source, zipfile.ZipFile(crafted, "w") as target:
        for entry in source.namelist():
            content = source.read(entry)
            if entry == "schema.json":
                schema = json.loads(content)
                schema["__module__"], schema["__class__"] = "os", "system"
                content = json.dumps(schema).encode()
            target.writestr(entry, content)
    (folder / "model.skops").write_bytes(crafted.getvalue())
    with pytest.raises(UntrustedArtifact, match=r"os\.system"):
        flavor.load(folder)


@pytest.mark.parametrize(
    "target",
    [
        "numpy.testing._private.utils.runstring",  # a numpy function that executes its argument
        "numpy.memmap",  # a numpy class whose constructor writes files
        "scipy.io.savemat",
        "sklearn.utils._testing.TempMemmap",
    ],
)
def test_a_trusted_library_is_not_a_licence_to_call_anything_in_it(tmp_path: Path, target: str) -> None:
    module, _, name = target.rpartition(".")
    call = {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "__id__": 5,
        "content": [],
    }
    schema = {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode", "__id__": 1}
    schema |= {"content": call, "protocol": 2, "_skops_version": "0.16.0"}
    artifact = io.BytesIO()
    with zipfile.ZipFile(artifact, "w") as target_zip:
        target_zip.writestr("schema.json", json.dumps(schema))
    folder = tmp_path / "crafted"
    folder.mkdir()
    (folder / "model.skops").write_bytes(artifact.getvalue())
    with pytest.raises(UntrustedArtifact, match=target.replace(".", r"\.")):
        flavor_named("sklearn").load(folder, trusted=True)


def test_sklearn_save_refuses_custom_code_and_points_to_the_python_flavor(tmp_path: Path) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = Pipeline([("twice", FunctionTransformer(func=transform_twice))])
    with pytest.raises(UntrustedArtifact, match=r"transform_twice.*python-flavor"):
        flavor_for(model).save(model, tmp_path / "model")
    assert not (tmp_path / "model" / "model.skops").exists()


def test_python_flavor_loads_only_when_trusted(user_models: Any, tmp_path: Path) -> None:
    flavor = flavor_named("python")
    flavor.save(user_models.Threshold(cut=1.0), tmp_path)
    with pytest.raises(
        UntrustedArtifact, match=r"loopml_test_user_models:Threshold.*runs its code.*trusted=True"
    ):
        flavor.load(tmp_path)


def test_python_flavor_refuses_a_model_its_params_do_not_rebuild(user_models: Any, tmp_path: Path) -> None:
    flavor = flavor_named("python")
    packages = tmp_path / "packages"
    fitted = user_models.Fitted().fit(np.array([1.0, 2.0]))
    with pytest.raises(InvalidInput, match=r"differs from the model \(in mean_\)"):
        flavor.save(fitted, packages / "fitted")
    with pytest.raises(InvalidInput, match=r"in labels.*tuple comes back as a list"):
        flavor.save(user_models.Threshold(labels=("no", "yes")), packages / "tuple")
    with pytest.raises(InvalidInput, match="JSON values"):
        flavor.save(user_models.Threshold(cut=float("nan")), packages / "nan")
    assert not packages.exists()  # nothing half-written


def test_python_flavor_refuses_classes_that_cannot_be_imported(tmp_path: Path) -> None:
    class Inner:
        def get_params(self) -> dict[str, Any]:
            return {}

        def predict(self, x: Any) -> Any:
            return x

    with pytest.raises(InvalidInput, match="inside a function"):
        flavor_named("python").save(Inner(), tmp_path)


def test_python_flavor_reports_a_missing_module(tmp_path: Path) -> None:
    document = {
        "format": "loopml.python_model",
        "format_version": 1,
        "class": "loopml_no_such_module:Model",
        "build": "init",
        "params": {},
        "source_hash": None,
    }
    (tmp_path / "python_model.json").write_text(json.dumps(document))
    with pytest.raises(NotFound, match="cannot import loopml_no_such_module"):
        flavor_named("python").load(tmp_path, trusted=True)
    (tmp_path / "python_model.json").write_text(json.dumps({**document, "format_version": 99}))
    with pytest.raises(InvalidInput, match="upgrade loopml"):
        flavor_named("python").load(tmp_path, trusted=True)


def test_flavor_for_refuses_arbitrary_objects_with_the_way_out() -> None:
    class PredictsOnly:
        def predict(self, x: Any) -> Any:
            return x

    with pytest.raises(
        InvalidInput,
        match=r"builtins\.object.*flavors: sklearn, onnx, lightgbm, xgboost, python.*never pickles",
    ):
        flavor_for(object())
    with pytest.raises(InvalidInput, match=r"PredictsOnly.*only pickle could save it.*get_params\(\)"):
        flavor_for(PredictsOnly())
    with pytest.raises(InvalidInput, match="look like a pickle"):
        flavor_for(b"\x80\x04K\x01.")
    with pytest.raises(InvalidInput, match="not a model: pass a fitted instance"):
        flavor_for(dict)


def test_flavor_named_refuses_unknown_names_as_from_a_newer_loopml() -> None:
    assert flavor_names() == ["sklearn", "onnx", "lightgbm", "xgboost", "python", "mlflow"]
    with pytest.raises(NotFound, match=r"'h2o'.*newer LoopML.*upgrade loopml"):
        flavor_named("h2o")


# library versions


def test_check_libraries_warns_with_both_versions() -> None:
    flavor = flavor_named("sklearn")
    saved = flavor.libraries()
    assert set(saved) == {"scikit-learn", "numpy", "scipy", "skops"}
    assert flavor.check_libraries(saved) == []
    installed = saved["scikit-learn"]
    warnings = flavor.check_libraries({**saved, "scikit-learn": "0.0.1", "numpy": "0.0.1"})
    assert len(warnings) == 1  # numpy is not checked: its patch releases do not change a model
    assert "scikit-learn 0.0.1" in warnings[0]
    assert f"scikit-learn {installed} is installed" in warnings[0]


def test_python_flavor_records_the_distribution_of_the_model_code(user_models: Any) -> None:
    from loopml import __version__

    flavor: Flavor = flavor_named("python")
    assert flavor.libraries() == {}
    assert flavor.libraries(user_models.Threshold()) == {}  # a loose module: no distribution to record
    assert flavor.libraries(SklearnFlavor()) == {"loopml": __version__}  # any object of an installed package


def test_check_libraries_of_the_python_flavor_names_a_missing_package() -> None:
    flavor: Flavor = flavor_named("python")
    assert flavor.check_libraries({"loopml-no-such-dist": "1.2"}) == [
        "the model was saved with loopml-no-such-dist 1.2, which is not installed: "
        "pip install 'loopml-no-such-dist==1.2'"
    ]


def test_skops_loading_falls_back_to_the_public_api_when_internals_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    from loopml.registry import skops_io

    monkeypatch.setitem(sys.modules, "skops.io._audit", None)  # `from skops.io._audit import ...` fails
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    loaded = skops_io.loads(skops_io.dumps(model))
    assert loaded.predict(np.array([[3.0]])).tolist() == [1]
    with pytest.raises(UntrustedArtifact, match="transform_twice"):
        skops_io.loads(sio.dumps(FunctionTransformer(func=transform_twice)))
    with pytest.raises(InvalidInput, match="not a readable skops artifact"):
        skops_io.loads(b"not a zip")
