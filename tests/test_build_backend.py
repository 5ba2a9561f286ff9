"""The build backend: what PHOENIX_COMPILE asks of it (docs/operations.md, "The compiled build")."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """build_backend/phoenix_build.py as pip loads it (pyproject.toml's backend-path)."""
    monkeypatch.syspath_prepend(str(ROOT / "build_backend"))
    monkeypatch.chdir(ROOT)  # where pip runs the hooks
    return importlib.import_module("phoenix_build")


@pytest.mark.parametrize("value", [None, "", "0"])
def test_the_pure_build_asks_for_nothing_more(
    backend: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("PHOENIX_COMPILE", raising=False)
    else:
        monkeypatch.setenv("PHOENIX_COMPILE", value)
    assert backend.get_requires_for_build_wheel() == []
    assert backend.get_requires_for_build_editable() == []


def test_the_compiled_build_asks_for_mypyc_and_the_dependencies(
    backend: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOENIX_COMPILE", "1")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert backend.get_requires_for_build_wheel() == [backend.MYPYC, *dependencies]


@pytest.mark.parametrize("value", ["true", "yes", "2", " 1"])
def test_another_value_of_phoenix_compile_stops_the_build(
    backend: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Not a pure build in place of the compiled one the user meant to ask for.
    monkeypatch.setenv("PHOENIX_COMPILE", value)
    message = f"PHOENIX_COMPILE must be 1 (the compiled build) or 0 (pure Python), not {value!r}"
    for hook in (backend.get_requires_for_build_wheel, backend.get_requires_for_build_editable):
        with pytest.raises(SystemExit) as stopped:
            hook()
        assert stopped.value.code == message
