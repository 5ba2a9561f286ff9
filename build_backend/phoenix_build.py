"""setuptools' build backend, which also asks for mypyc when PHOENIX_COMPILE=1.

With PHOENIX_COMPILE=1 in the environment, setup.py compiles the hot
modules with mypyc (docs/operations.md, "The compiled build"). mypyc is
part of mypy, and type-checks what it compiles against the modules it
imports: so the build needs mypy and the project's own dependencies then,
and nothing more otherwise. Unset, empty or 0 builds pure Python; any other
value is refused (`compiling`).
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from setuptools.build_meta import *  # noqa: F403 (the rest of the backend, as it is)

# The mypy whose mypyc the compiled build was tested with (CI builds with it).
MYPYC = "mypy==2.4.1"


def compiling() -> bool:
    """Whether PHOENIX_COMPILE asks for the compiled build (setup.py asks it too).

    Only 1 does; unset, empty or 0 is the pure build. Anything else ("true",
    "yes") stops the build, rather than quietly building pure Python.
    """
    value = os.environ.get("PHOENIX_COMPILE", "")
    if value not in ("", "0", "1"):
        raise SystemExit(
            f"PHOENIX_COMPILE must be 1 (the compiled build) or 0 (pure Python), not {value!r}"
        )
    return value == "1"


def _compile_requires() -> list[str]:
    if not compiling():
        return []
    with open("pyproject.toml", "rb") as file:
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    return [MYPYC, *dependencies]


# setuptools' own would run setup.py to ask it, before mypyc is there; it has
# nothing to add since setuptools 70.1 (which builds wheels without `wheel`).
def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _compile_requires()


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _compile_requires()
