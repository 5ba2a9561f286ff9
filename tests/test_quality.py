"""The house style's checks run with the suite, so CI keeps them true."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import phoenix

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_code_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def compiled_modules() -> list[str]:
    """The modules setup.py compiles with PHOENIX_COMPILE=1, by path."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COMPILED":
            paths: list[str] = ast.literal_eval(node.value)
            return paths
    raise AssertionError("setup.py has no COMPILED list")


def test_the_suite_runs_on_the_build_it_was_asked_for() -> None:
    # CI runs it on the pure build, then on the compiled one (PHOENIX_COMPILE=1).
    wanted = "compiled" if os.environ.get("PHOENIX_COMPILE") == "1" else "python"
    assert phoenix.build() == wanted
    for path in compiled_modules():
        name = path.removeprefix("src/").removesuffix(".py").replace("/", ".")
        module = importlib.import_module(name)
        assert module.__file__ is not None
        assert module.__file__.endswith(".py") == (wanted == "python"), module.__file__


# What may act when it runs: a call (but len), an assignment expression, an await or yield.
_ACTING = (ast.Call, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)


@pytest.mark.parametrize("path", compiled_modules())
def test_nothing_acts_in_a_slice_of_a_compiled_module(path: str) -> None:
    """mypyc (2.4.1) runs the bounds of a slice twice when the sliced type is not a list,
    tuple, str or bytes (a memoryview, a bytearray): `rest[sock.send(rest) :]` sent
    every reply twice."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    acting = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Slice)
        for part in ast.walk(node)
        if isinstance(part, _ACTING)
        and not (isinstance(part, ast.Call) and ast.unparse(part.func) == "len")
    ]
    assert acting == []
