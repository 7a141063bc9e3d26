"""Config files (YAML / TOML / JSON) of a run: kept verbatim as artifacts under `configs/`, their values
logged as params, and compared between runs line by line."""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from loopml.core.errors import InvalidInput

CONFIG_FOLDER = "configs"
MAX_CONFIG_BYTES = 1 << 20


def parse_config(path: Path) -> dict[str, Any]:
    """The values of a YAML, TOML or JSON file (a mapping at the top); anything else is `InvalidInput`."""
    if not path.is_file():
        raise InvalidInput(f"no such config file: {str(path)!r}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"{path.name} is larger than {MAX_CONFIG_BYTES >> 20} MiB: log it as an artifact")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            values = yaml.safe_load(text)
        elif suffix == ".toml":
            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise InvalidInput(f"{path.name}: a config file must be .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{path.name} does not parse: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise InvalidInput(f"{path.name} must hold a mapping of names to values at the top")
    return values


def config_diff(name: str, old: str, new: str, old_label: str, new_label: str) -> str:
    """A unified diff of one config file between two runs ('' when identical)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{old_label}/{name}",
        tofile=f"{new_label}/{name}",
    )
    return "".join(lines)
