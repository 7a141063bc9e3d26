"""One typed settings object, built once at the edge (CLI, server, first API call) and passed down.

Precedence: keyword argument > `LOOPML_*` environment variable > `loopml.toml` > default.
The project folder is the nearest ancestor of the working directory holding `loopml.toml` or `.loopml/`;
with none, the working directory (and `.loopml/` is created there on first use, as MLflow does with `mlruns`).
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from loopml.core.errors import InvalidInput

PROJECT_FILE = "loopml.toml"
HOME_DIR = ".loopml"

# The TOML values for the Settings object being built; a ContextVar so concurrent builds never mix.
_toml_values: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "loopml_toml_values", default=None
)


class _TomlValues(PydanticBaseSettingsSource):
    """Settings source serving the keys of `loopml.toml` that name settings (other tables are for later parts)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_toml_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        return {k: v for k, v in (_toml_values.get() or {}).items() if k in fields}


class Settings(BaseSettings):
    """Everything configurable about a LoopML project. Paths are absolute once built by `load_settings`."""

    model_config = SettingsConfigDict(env_prefix="LOOPML_", extra="ignore", frozen=True)

    project_dir: Path = Field(default_factory=Path.cwd, description="Folder holding loopml.toml / .loopml")
    home: Path | None = Field(default=None, description="Store folder; default <project_dir>/.loopml")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home")
    artifact_url: str | None = Field(
        default=None, description="fsspec URL of the blob store; default home/blobs"
    )
    experiment: str = Field(default="Default", description="Experiment used when a run names none")
    flush_interval_s: float = Field(default=1.0, gt=0, le=3600, description="Max age of a buffered point")
    flush_max_points: int = Field(default=200_000, gt=0, le=10**8, description="Points that force a flush")
    busy_timeout_s: float = Field(default=30.0, gt=0, le=86_400, description="Wait for a locked database")
    max_diff_bytes: int = Field(default=1_000_000, ge=0, description="Cap of the stored uncommitted git diff")
    capture_git: bool = True
    capture_packages: bool = True
    tracking_uri: str | None = Field(
        default=None, description="http(s):// URL of a LoopML team server: tracking goes there"
    )
    token: SecretStr | None = Field(default=None, description="Bearer token for the team server")
    executor: str | None = Field(
        default=None,
        description="Executor of every pipeline run that passes none, over the pipeline's own (e.g. ray://head:10001)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlValues(settings_cls))

    @property
    def home_dir(self) -> Path:
        """The store folder (`.loopml/` by default)."""
        return self.home if self.home is not None else self.project_dir / HOME_DIR

    @property
    def metadata_url(self) -> str:
        """The metadata database URL, SQLite in the store folder unless configured."""
        return self.database_url or f"sqlite:///{self.home_dir / 'loopml.db'}"

    @property
    def blob_url(self) -> str:
        """The blob store URL, a local folder in the store folder unless configured."""
        return self.artifact_url or str(self.home_dir / "blobs")

    @property
    def uses_default_home(self) -> bool:
        """True when the store folder is the local default (and so may be created on first use)."""
        return self.database_url is None or self.artifact_url is None


def find_project(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding `loopml.toml` or `.loopml/`, or None."""
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file() or (folder / HOME_DIR).is_dir():
            return folder
    return None


def read_project_file(path: Path) -> dict[str, Any]:
    """The top-level keys of a `loopml.toml`; a malformed file is an `InvalidInput` naming it."""
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"{path} is not valid TOML: {error}") from None


def load_settings(start: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings for the project containing `start` (default: the working directory)."""
    start = (start or Path.cwd()).resolve()
    # The project folder decides which loopml.toml is read, so it is resolved before the other settings:
    # argument, then LOOPML_PROJECT_DIR (containers set it), then the nearest loopml.toml above `start`.
    project = (
        overrides.pop("project_dir", None)
        or os.environ.get("LOOPML_PROJECT_DIR")
        or find_project(start)
        or start
    )
    project = Path(project).resolve()
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise InvalidInput(
            f"unknown LoopML setting(s): {', '.join(unknown)}; known: {', '.join(Settings.model_fields)}"
        )
    project_file = project / PROJECT_FILE
    toml = read_project_file(project_file) if project_file.is_file() else {}
    token = _toml_values.set(toml)
    try:
        settings = Settings(project_dir=project, **overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise InvalidInput(f"invalid LoopML settings ({problems})") from None
    finally:
        _toml_values.reset(token)
    return _anchor_paths(settings, project)


def _anchor_paths(settings: Settings, project: Path) -> Settings:
    """Relative paths in settings are relative to the project folder, wherever the command runs from."""
    update: dict[str, Any] = {}
    if settings.home is not None and not settings.home.is_absolute():
        update["home"] = (project / settings.home).resolve()
    url = settings.database_url
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url.removeprefix("sqlite:///").split("?", 1)
        if relative[0] and relative[0] != ":memory:":
            query = f"?{relative[1]}" if len(relative) > 1 else ""
            update["database_url"] = f"sqlite:///{(project / relative[0]).resolve()}{query}"
    artifacts = settings.artifact_url
    if artifacts and "://" not in artifacts and not Path(artifacts).is_absolute():
        update["artifact_url"] = str((project / artifacts).resolve())
    return settings.model_copy(update=update) if update else settings
