"""The build's one step beyond pyproject.toml: the scoring core and the alert rules compiled.

``streams/core`` and ``streams/rules`` (most of the experience step's Python work per
event) are compiled by mypyc into C extensions of the same modules, from the same source
and its type annotations; the ``.py`` files stay in the wheel beside them. Building them
needs a C compiler and Python's headers. Where the compilation fails (no compiler, say)
the build goes on without it and says so in one warning: the package is then the same
code run as Python, slower. ``CXPULSE_PURE=1`` builds without trying. A compiled build
records what it was built from in ``cxpulse/native.json``, and ``cxpulse/native.py`` runs
the Python modules instead of a build older than its source (docs/architecture.md,
"The compiled core").
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "cxpulse"
_spec = importlib.util.spec_from_file_location("_cxpulse_native", PACKAGE / "native.py")
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)

#: Commands that only read the project's metadata: nothing to compile for them.
METADATA_ONLY = {"egg_info", "dist_info", "sdist", "--name", "--version"}


def not_compiled(why: str, *packages: Path) -> None:
    """Record in each package directory that the build could not compile, and say so."""
    for package in packages:
        if package.is_dir():
            native.write_not_compiled(package, why)
    print(
        f"warning: cxpulse's scoring core is not compiled ({why}): it will run as Python, "
        "slower (docs/architecture.md, 'The compiled core')",
        file=sys.stderr,
    )


def native_modules() -> list:
    if os.environ.get("CXPULSE_PURE") == "1":
        (PACKAGE / native.MANIFEST).unlink(missing_ok=True)
        return []
    if METADATA_ONLY & set(sys.argv[1:]):
        return []
    from mypyc.build import mypycify

    os.chdir(ROOT)  # mypyc names a module by its path: cxpulse/streams/core/apply.py
    try:
        modules = mypycify(
            # The build's environment has the core's imports, not every package mypy sees
            # in a checkout (pydantic-settings, Faust, ...): a `type: ignore` for one of
            # those is unused here and must not fail the build (make lint checks them).
            ["--no-warn-unused-ignores"]
            + [p.relative_to(ROOT).as_posix() for p in native.compiled(PACKAGE)],
            opt_level="3",
            group_name=native.GROUP,
        )
    except SystemExit as exc:  # mypyc's type check failed; it printed why
        not_compiled(f"mypyc stopped: {exc.code}", PACKAGE)
        return []
    native.write_manifest(PACKAGE)
    return modules


class OptionalBuildExt(build_ext):
    """Compiles the group, or, when any of it fails, none of it (the group's modules call
    each other through its shared library: all or nothing), recording why."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # a missing or failing C compiler: distutils' errors
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []
            compiler = (getattr(self.compiler, "compiler_so", None) or ["the C compiler"])[0]
            last = (str(exc).strip().splitlines() or [""])[-1]
            # the last line, unless it is the whole compiler command again
            why = f"{type(exc).__name__} from {compiler}" + (
                f": {last}" if last and len(last) <= 160 else ""
            )
            not_compiled(why, *{PACKAGE, Path(self.build_lib) / "cxpulse"})


setup(ext_modules=native_modules(), cmdclass={"build_ext": OptionalBuildExt})
