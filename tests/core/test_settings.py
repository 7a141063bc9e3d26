"""Settings precedence: argument > LOOPML_* environment > loopml.toml > default; project discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.errors import InvalidInput
from loopml.core.settings import find_project, load_settings


def test_precedence_argument_over_env_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOPML_EXPERIMENT", raising=False)
    assert load_settings(tmp_path).experiment == "Default"
    (tmp_path / "loopml.toml").write_text(
        'experiment = "from-file"\nflush_interval_s = 2.5\n[models.fraud]\nx = 1\n'
    )
    assert load_settings(tmp_path).experiment == "from-file"
    monkeypatch.setenv("LOOPML_EXPERIMENT", "from-env")
    settings = load_settings(tmp_path)
    assert settings.experiment == "from-env"
    assert settings.flush_interval_s == 2.5
    assert load_settings(tmp_path, experiment="from-arg").experiment == "from-arg"


def test_project_is_found_by_walking_up_and_paths_resolve(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text('home = "store"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project(deep) == tmp_path
    settings = load_settings(deep)
    assert settings.project_dir == tmp_path.resolve()
    assert settings.home_dir == (tmp_path / "store").resolve()
    assert settings.metadata_url == f"sqlite:///{(tmp_path / 'store').resolve() / 'loopml.db'}"


def test_no_project_means_working_directory(tmp_path: Path) -> None:
    assert find_project(tmp_path) is None or find_project(tmp_path) != tmp_path
    assert load_settings(tmp_path).home_dir == tmp_path.resolve() / ".loopml"


def test_bad_values_are_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_FLUSH_INTERVAL_S", "soon")
    with pytest.raises(InvalidInput, match="flush_interval_s"):
        load_settings(tmp_path)
    monkeypatch.delenv("LOOPML_FLUSH_INTERVAL_S")
    (tmp_path / "loopml.toml").write_text("experiment = \n")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_settings(tmp_path)


def test_unknown_setting_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown LoopML setting"):
        load_settings(tmp_path, flush_interval=5)


def test_loopml_project_dir_picks_the_project_and_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "app" / "project"
    elsewhere.mkdir(parents=True)
    (elsewhere / "loopml.toml").write_text('experiment = "baked"\n')
    monkeypatch.setenv("LOOPML_PROJECT_DIR", str(elsewhere))
    settings = load_settings(tmp_path)
    assert settings.project_dir == elsewhere.resolve()
    assert settings.experiment == "baked"
    assert settings.home_dir == elsewhere.resolve() / ".loopml"
    assert (
        load_settings(tmp_path, project_dir=tmp_path).project_dir == tmp_path.resolve()
    )  # the argument wins
