"""The build's one dynamic part: with PHOENIX_COMPILE=1, the hot modules compiled by mypyc.

Everything else is in pyproject.toml. Without the variable the package is
pure Python; with it, these modules are also built as C extensions (the
same source), which Python imports in their place (docs/operations.md).
"""

from phoenix_build import compiling  # the build backend (backend-path), already loaded
from setuptools import setup

# A RESP command's path, from the bytes to the store and back.
COMPILED = [
    "src/phoenix/resp.py",
    "src/phoenix/resp_server.py",
    "src/phoenix/resp_commands.py",
    "src/phoenix/node.py",
    "src/phoenix/store.py",
    "src/phoenix/policy.py",
    "src/phoenix/segment.py",
    "src/phoenix/clock.py",
]

ext_modules = []
if compiling():
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3", group_name="phoenix")

setup(ext_modules=ext_modules)
