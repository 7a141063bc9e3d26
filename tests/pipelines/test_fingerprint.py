"""Code and environment fingerprints: what changes the key, what must not, and the environment table's cache."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import linecache
import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy
import pytest

from loopml.pipelines import environment, fingerprint
from loopml.pipelines.fingerprint import CodeFingerprint, code_fingerprint, environment_fingerprint

SRC = str(Path(fingerprint.__file__).parents[2])


class FirstParty:
    """Small first-party modules in a folder on sys.path, written and (re)imported from fresh source."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: set[str] = set()

    def write(self, name: str, source: str) -> Path:
        path = self.folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        self.names.add(name)
        return path

    def load(self, name: str, source: str | None = None, **others: str) -> ModuleType:
        """Write `others` and `name` (when given) and import `name` anew, with every module written so far."""
        for other, text in others.items():
            self.write(other, text)
        if source is not None:
            self.write(name, source)
        self.forget()
        importlib.invalidate_caches()
        return importlib.import_module(name)

    def forget(self) -> None:
        for name in self.names:
            sys.modules.pop(name, None)


@pytest.fixture
def first_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FirstParty]:
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    # No .pyc: a rewrite of the same size within the same second would otherwise import the old bytecode.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    files = FirstParty(folder)
    yield files
    files.forget()


def step_of(first_party: FirstParty, source: str, name: str = "fpt_steps", **others: str) -> CodeFingerprint:
    result = code_fingerprint(first_party.load(name, source, **others).step)
    assert result.uncacheable is None, result.uncacheable
    return result


def changed(a: CodeFingerprint, b: CodeFingerprint) -> set[str]:
    return {key for key in a.parts.keys() | b.parts.keys() if a.parts.get(key) != b.parts.get(key)}


BASE = '''
    """Steps."""
    LIMIT = 10


    def retry(**options):
        return lambda fn: fn


    def helper(x):
        return min(x, LIMIT)


    @retry(retries=3)
    def step(x):
        """Clip and double."""
        return helper(x) * 2


    def unrelated(x):
        return x - 1
'''


def test_comments_docstrings_layout_and_decorator_arguments_keep_the_digest(first_party: FirstParty) -> None:
    before = step_of(first_party, BASE)
    after = step_of(
        first_party,
        '''
        def retry(**options):
            return lambda fn: fn
        def unrelated(x):
            return x - 1


        @retry(retries=5)  # more retries never change outputs
        def step(x):
            """Clip, then double: a new docstring."""

            # a comment
            return (helper(x)
                    * 2)


        def helper(x):
            "Clip."
            return min(x, LIMIT)
        LIMIT = 10
        ''',
    )
    assert after.digest == before.digest
    assert dict(after.parts) == dict(before.parts)


def test_a_body_change_changes_the_digest(first_party: FirstParty) -> None:
    before = step_of(first_party, BASE)
    after = step_of(first_party, BASE.replace("helper(x) * 2", "helper(x) * 3"))
    assert after.digest != before.digest
    assert changed(before, after) == {"fpt_steps:step"}


def test_a_helper_change_in_the_same_module_is_named_in_parts(first_party: FirstParty) -> None:
    before = step_of(first_party, BASE)
    after = step_of(first_party, BASE.replace("min(x, LIMIT)", "max(x, LIMIT)"))
    assert after.digest != before.digest
    assert changed(before, after) == {"fpt_steps:helper"}


def test_an_unrelated_function_changing_keeps_the_digest(first_party: FirstParty) -> None:
    before = step_of(first_party, BASE)
    after = step_of(first_party, BASE.replace("return x - 1", "return x - 2"))
    assert after.digest == before.digest


def test_a_module_constant_the_step_reads_is_part_of_the_digest(first_party: FirstParty) -> None:
    before = step_of(first_party, BASE)
    after = step_of(first_party, BASE.replace("LIMIT = 10", "LIMIT = 11"))
    assert changed(before, after) == {"fpt_steps:LIMIT"}


@pytest.mark.parametrize("other", ["1.0", "'1'", "True", "(1,)", "[1]", "{1: 1}"])
def test_constants_are_type_tagged(first_party: FirstParty, other: str) -> None:
    assert step_of(first_party, BASE.replace("LIMIT = 10", "LIMIT = 1")).digest != (
        step_of(first_party, BASE.replace("LIMIT = 10", f"LIMIT = {other}")).digest
    )


HELPERS = """
    SCALE = 2


    def double(x):
        return x * SCALE
"""


@pytest.mark.parametrize(
    ("imports", "call", "part"),
    [
        ("import fpt_helpers", "fpt_helpers.double", "fpt_helpers"),
        ("from fpt_helpers import double", "double", "fpt_helpers:double"),
    ],
)
def test_a_helper_change_in_another_first_party_module_changes_the_digest(
    first_party: FirstParty, imports: str, call: str, part: str
) -> None:
    steps = f"""
        {imports}


        def step(x):
            return {call}(x) + 1
    """
    before = step_of(first_party, steps, fpt_helpers=HELPERS)
    after = step_of(first_party, steps, fpt_helpers=HELPERS.replace("x * SCALE", "x * SCALE + 1"))
    assert after.digest != before.digest
    assert part in changed(before, after)
    again = step_of(first_party, steps, fpt_helpers=HELPERS.replace("SCALE = 2", "SCALE = (2)  # scale"))
    assert again.digest == before.digest


@pytest.mark.parametrize(
    ("imports", "body"),
    [
        ("import fpt_helpers", "fpt_helpers.double(x)"),
        ("from fpt_helpers import double", "double(x)"),
        ("from fpt_helpers import SCALE", "x * SCALE"),
    ],
)
def test_what_a_whole_first_party_module_imports_is_followed(
    first_party: FirstParty, imports: str, body: str
) -> None:
    middle = f"{imports}\n\n\ndef twice(x):\n    return 2 * {body}\n"
    steps = "import fpt_middle\n\n\ndef step(x):\n    return fpt_middle.twice(x)\n"
    before = step_of(first_party, steps, fpt_helpers=HELPERS, fpt_middle=middle)
    after = step_of(
        first_party, steps, fpt_helpers=HELPERS.replace("SCALE = 2", "SCALE = 3"), fpt_middle=middle
    )
    assert "fpt_middle" in before.parts
    assert after.digest != before.digest


def test_third_party_references_land_in_packages_and_stdlib_does_not(first_party: FirstParty) -> None:
    result = step_of(
        first_party,
        """
        import json
        import os

        import numpy as np
        from numpy.linalg import norm
        from yaml import SafeDumper


        def step(x):
            return np.asarray(x), norm(x), SafeDumper, json.dumps(x), os.sep
        """,
    )
    assert result.packages == {"numpy", "yaml"}
    assert step_of(
        first_party, "from numpy.linalg import norm\n\n\ndef step(x):\n    return norm(x)\n"
    ).packages == {"numpy"}


def test_mutual_and_self_recursion_terminate(first_party: FirstParty) -> None:
    result = step_of(
        first_party,
        """
        def step(n):
            return 0 if n <= 0 else other(n - 1) + step(n - 2)


        def other(n):
            return step(n)
        """,
    )
    assert set(result.parts) == {"fpt_steps:step", "fpt_steps:other"}


CLOSURE = """
    SCALE = 3


    def helper(x):
        return x + 1


    def make(factor):
        def inner(x):
            return helper(x) * factor
        return inner


    step = make(2)
    square = lambda v: v * SCALE  # noqa: E731
"""


def test_a_closure_fingerprints_its_cells_and_the_helpers_it_calls(first_party: FirstParty) -> None:
    before = step_of(first_party, CLOSURE)
    assert "fpt_steps:make.<locals>.inner" in before.parts
    assert "fpt_steps:helper" in before.parts
    assert step_of(first_party, CLOSURE.replace("make(2)", "make(3)")).digest != before.digest
    assert changed(before, step_of(first_party, CLOSURE.replace("x + 1", "x + 2"))) == {"fpt_steps:helper"}


def test_a_lambda_fingerprints_its_body_and_the_constants_it_reads(first_party: FirstParty) -> None:
    def square(source: str) -> CodeFingerprint:
        return code_fingerprint(first_party.load("fpt_steps", source).square)

    before = square(CLOSURE)
    assert before.uncacheable is None
    assert square(CLOSURE.replace("v * SCALE", "v + SCALE")).digest != before.digest
    assert changed(before, square(CLOSURE.replace("SCALE = 3", "SCALE = 4"))) == {"fpt_steps:SCALE"}


def test_two_lambdas_on_one_line_are_told_apart(first_party: FirstParty) -> None:
    module = first_party.load("fpt_steps", "first, second = (lambda x: x + 1, lambda y: y * 2)\n")
    assert code_fingerprint(module.first).digest != code_fingerprint(module.second).digest


def test_wrapped_helpers_and_built_globals_are_followed(first_party: FirstParty) -> None:
    source = """
        import functools
        import re

        PATTERN = re.compile("a+")


        @functools.lru_cache
        def cached(x):
            return x * 2


        def step(text):
            return PATTERN.findall(text), cached(len(text))
    """
    before = step_of(first_party, source)
    assert changed(before, step_of(first_party, source.replace('"a+"', '"b+"'))) == {"fpt_steps:PATTERN"}
    assert changed(before, step_of(first_party, source.replace("x * 2", "x * 3"))) == {"fpt_steps:cached"}


def test_instances_of_first_party_classes_include_the_class_and_how_they_were_built(
    first_party: FirstParty,
) -> None:
    source = """
        from dataclasses import dataclass


        @dataclass
        class Config:
            lr: float = 0.1

            def scaled(self):
                return self.lr * 2


        CONFIG = Config(lr=0.5)


        def step():
            return CONFIG.scaled()
    """
    before = step_of(first_party, source)
    assert changed(before, step_of(first_party, source.replace("lr=0.5", "lr=0.6"))) == {"fpt_steps:CONFIG"}
    assert "fpt_steps:Config.scaled" in changed(before, step_of(first_party, source.replace("* 2", "* 3")))


def test_the_digest_has_no_absolute_paths(
    first_party: FirstParty, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = step_of(first_party, BASE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "fpt_steps.py").write_text(textwrap.dedent(BASE))
    first_party.forget()
    monkeypatch.syspath_prepend(str(elsewhere))
    importlib.invalidate_caches()
    assert code_fingerprint(importlib.import_module("fpt_steps").step).digest == before.digest


def test_an_exec_defined_function_is_uncacheable_with_a_reason(first_party: FirstParty) -> None:
    namespace: dict[str, object] = {"__name__": "fpt_generated"}
    exec("def made(x):\n    return x + 1\n", namespace)
    reason = code_fingerprint(namespace["made"]).uncacheable  # type: ignore[arg-type]
    assert reason is not None
    assert "fpt_generated:made" in reason
    assert "exec" in reason
    source = "helper = None\nexec('def helper(x):\\n    return x')\n\n\ndef step(x):\n    return helper(x)\n"
    reason = code_fingerprint(first_party.load("fpt_steps", source).step).uncacheable
    assert reason is not None
    assert "fpt_steps:helper" in reason


def test_a_source_file_edited_after_import_is_uncacheable(first_party: FirstParty) -> None:
    module = first_party.load("fpt_steps", BASE)
    first_party.write("fpt_steps", BASE.replace("helper(x) * 2", "helper(x) * 4"))
    reason = code_fingerprint(module.step).uncacheable
    assert reason is not None
    assert "does not match the running code" in reason


def test_a_notebook_cell_is_read_through_linecache(monkeypatch: pytest.MonkeyPatch) -> None:
    def cell(number: int, code: str) -> CodeFingerprint:
        # As IPython does: the cell's text is registered in linecache under a made-up file name.
        name = f"/tmp/ipykernel_0/fpt_cell_{number}.py"
        monkeypatch.setitem(linecache.cache, name, (len(code), None, code.splitlines(True), name))
        namespace: dict[str, object] = {"__name__": "__main__"}
        exec(compile(code, name, "exec"), namespace)
        return code_fingerprint(namespace["step"])  # type: ignore[arg-type]

    first = cell(1, "RATE = 2\n\ndef step(x):\n    return x * RATE\n")
    assert first.uncacheable is None
    assert set(first.parts) == {"__main__:step", "__main__:RATE"}
    assert (
        cell(2, "RATE = 2\n# tweak\ndef step(x):\n    'Scale.'\n    return x * RATE\n").digest == first.digest
    )
    assert cell(3, "RATE = 2\n\ndef step(x):\n    return x * RATE + 1\n").digest != first.digest


def _run(code: str, *, path: str, seed: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([path, SRC]), "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    return result.stdout.strip()


def test_the_digest_is_the_same_in_another_process(first_party: FirstParty) -> None:
    table = """
        TABLE = {"b": frozenset({"x", "y", "z"}), "a": [1.5, None, b"raw"], "c": {3, 1, 2}}


        def uses_table():
            return TABLE, step
    """
    here = code_fingerprint(
        first_party.load("fpt_steps", textwrap.dedent(BASE) + textwrap.dedent(table)).uses_table
    )
    assert here.uncacheable is None
    code = "import fpt_steps; from loopml.pipelines.fingerprint import code_fingerprint as f; "
    code += "print(f(fpt_steps.uses_table).digest)"
    assert {_run(code, path=str(first_party.folder), seed=seed) for seed in ("1", "2")} == {here.digest}


def test_a_step_in_main_is_stable_across_processes(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(
        "from loopml.pipelines.fingerprint import code_fingerprint\n\n"
        "def step(x):\n    return {'a', 'b'} | {x}\n\n"
        "result = code_fingerprint(step)\nprint(result.uncacheable, result.digest)\n"
    )
    code = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    outputs = {_run(code, path=str(tmp_path), seed=seed) for seed in ("1", "2")}
    assert len(outputs) == 1
    assert outputs.pop().startswith("None ")


@pytest.fixture
def fresh_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "_TABLES", {})


@pytest.mark.usefixtures("fresh_memo")
def test_environment_names_installed_distributions_only(tmp_path: Path) -> None:
    result = environment_fingerprint(["numpy", "yaml", "os", "fpt_not_installed"], cache_dir=tmp_path)
    assert set(result) == {"python", "numpy", "PyYAML"}
    assert result["python"].startswith(f"{platform.python_implementation()} {platform.python_version()} ")
    version, record = result["numpy"].split(":")
    assert version == numpy.__version__
    assert len(record) == 64


@pytest.mark.usefixtures("fresh_memo")
def test_environment_table_is_read_back_from_the_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = environment_fingerprint(["numpy"], cache_dir=tmp_path)
    files = list(tmp_path.glob("environment-*.json"))
    assert len(files) == 1
    assert "numpy" in json.loads(files[0].read_text())
    assert not list(tmp_path.glob(".environment-*"))  # no temporary file left behind

    def slow_path_taken() -> None:
        raise AssertionError("packages_distributions() ran although the cache file was there")

    monkeypatch.setattr(environment, "_TABLES", {})
    monkeypatch.setattr(importlib.metadata, "packages_distributions", slow_path_taken)
    assert environment_fingerprint(["numpy"], cache_dir=tmp_path) == first


@pytest.mark.usefixtures("fresh_memo")
def test_a_changed_lock_file_gives_a_new_cache_file(tmp_path: Path) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text("numpy==2.0\n")
    cache = tmp_path / "cache"
    environment_fingerprint(["numpy"], cache_dir=cache, lock_files=[lock, tmp_path / "missing.lock"])
    environment_fingerprint(["numpy"], cache_dir=cache, lock_files=[lock])
    assert len(list(cache.glob("environment-*.json"))) == 1
    lock.write_text("numpy==2.1\n")
    environment_fingerprint(["numpy"], cache_dir=cache, lock_files=[lock])
    assert len(list(cache.glob("environment-*.json"))) == 2
