"""The build's one step beyond pyproject.toml: the scoring core and the alert rules compiled.

``streams/core`` and ``streams/rules`` (most of the experience step's Python work per
event) are compiled by mypyc into C extensions of the same modules, from the same source
and its type annotations; the ``.py`` files stay in the wheel beside them. Building them
needs a C compiler; ``CXPULSE_PURE=1`` builds without compiling (the same code, slower).
A compiled build records what it was built from in ``cxpulse/native.json``, and
``cxpulse/native.py`` runs the Python modules instead of a build older than its source
(docs/architecture.md, "The compiled core").
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_cxpulse_native", ROOT / "cxpulse" / "native.py")
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)

#: Commands that only read the project's metadata: nothing to compile for them.
METADATA_ONLY = {"egg_info", "dist_info", "sdist", "--name", "--version"}


def native_modules() -> list:
    package = ROOT / "cxpulse"
    if os.environ.get("CXPULSE_PURE") == "1":
        (package / native.MANIFEST).unlink(missing_ok=True)
        return []
    if METADATA_ONLY & set(sys.argv[1:]):
        return []
    from mypyc.build import mypycify

    os.chdir(ROOT)  # mypyc names a module by its path: cxpulse/streams/core/apply.py
    modules = mypycify(
        # The build's environment has the core's imports, not every package mypy sees in a
        # checkout (pydantic-settings, Faust, ...): a `type: ignore` for one of those is
        # unused here and must not fail the build (make lint checks them).
        ["--no-warn-unused-ignores"]
        + [p.relative_to(ROOT).as_posix() for p in native.compiled(package)],
        opt_level="3",
        group_name=native.GROUP,
    )
    native.write_manifest(package)
    return modules


setup(ext_modules=native_modules())
