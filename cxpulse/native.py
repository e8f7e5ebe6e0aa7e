"""The compiled core: which modules are compiled, and never running a compiled build older
than its source.

The build (``setup.py``) compiles the scoring core and the alert rules with mypyc: C
extensions of the same modules, built from the same source, in one group whose shared
library is ``cxpulse/native__mypyc``. Python imports an extension before a ``.py`` of the
same name, so a compiled module left behind by an earlier build would run instead of an
edited source. The build therefore records the hashes of the sources it compiled, and of
the ones whose types they were checked against, in ``cxpulse/native.json``; ``use_fresh``
(run when ``cxpulse.streams`` is imported) compares them with the sources present, and if
any differs, or compiled modules are there without a record, every module of the group is
imported from its ``.py`` (the group's modules call each other directly, so it is all or
none), with one warning saying how to rebuild. ``CXPULSE_PURE=1`` runs them as Python
too, without a warning. ``STATUS`` says which runs.

Standard library only: ``setup.py`` loads this file before anything is installed.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: The compiled packages, relative to the ``cxpulse`` package (``__init__`` stays Python).
COMPILED = ("streams/core", "streams/rules")
#: What the compiled modules' types were checked against: a change there is a change too.
DEPENDS = ("schemas", "streams/pipeline/records.py", "streams/state/health.py")
#: The group's name: its shared library is ``cxpulse/native__mypyc``.
GROUP = "cxpulse.native"
MANIFEST = "native.json"
REBUILD = "make native (or CXPULSE_PURE=1 to build without compiling)"

PACKAGE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)

#: "compiled"; "python" (built without compiling); "python: not compiled (<why>)" (the
#: build could not); "python: <why a compiled build present is not used>"
STATUS = "python"


def compiled(package: Path) -> list[Path]:
    """The compiled modules' sources under ``package`` (the ``cxpulse`` directory)."""
    return sorted(
        p for d in COMPILED for p in (package / d).glob("*.py") if p.name != "__init__.py"
    )


def sources(package: Path) -> list[Path]:
    """The compiled sources and the ones they depend on, as the record lists them."""
    deps: list[Path] = []
    for d in DEPENDS:
        p = package / d
        deps += sorted(p.glob("*.py")) if p.is_dir() else [p]
    return compiled(package) + deps


def digests(package: Path, paths: Sequence[Path]) -> dict[str, str]:
    return {
        p.relative_to(package).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths
    }


def write_manifest(package: Path) -> None:
    """Record what a compiled build is built from (``setup.py``, when it compiles)."""
    text = json.dumps(digests(package, sources(package)), indent=1, sort_keys=True)
    (package / MANIFEST).write_text(text + "\n")


#: The record's only key when a build tried to compile and could not.
NOT_COMPILED = "not compiled"


def write_not_compiled(package: Path, why: str) -> None:
    """Record that the build could not compile, and why (``setup.py``): the worker's
    start-up line then says it, where a build's output is seldom read."""
    (package / MANIFEST).write_text(json.dumps({NOT_COMPILED: why}) + "\n")


def module_name(package: Path, source: Path) -> str:
    return "cxpulse." + ".".join(source.relative_to(package).with_suffix("").parts)


def _extensions(package: Path) -> list[Path]:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [p for d in COMPILED for p in (package / d).iterdir() if p.name.endswith(suffixes)]


def _record(package: Path) -> dict[str, str] | None:
    """The record of the last build (``write_manifest``, ``write_not_compiled``), if any."""
    path = package / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def why_stale(package: Path) -> str | None:
    """Why the compiled modules under ``package`` must not run (None: they may, or there
    are none)."""
    if not _extensions(package):
        return None
    built = _record(package)
    if built is None:
        return f"compiled modules without {MANIFEST}"
    if NOT_COMPILED in built:
        return f"compiled modules left by an earlier build; the last {NOT_COMPILED}"
    now = digests(package, [package / name for name in built if (package / name).exists()])
    for name, digest in built.items():
        if not (package / name).exists():
            return f"{name} was compiled and is gone"
        if now.get(name) != digest:
            return f"{name} changed since it was compiled"
    for p in compiled(package):
        if p.relative_to(package).as_posix() not in built:
            return f"{p.relative_to(package).as_posix()} is not in the compiled build"
    return None


def why_build_again(package: Path = PACKAGE) -> str | None:
    """Why ``make native`` must build though no source is newer than the record (None: it
    need not): the compiled build is stale (a compiled module deleted since), or the last
    build could not compile (a C compiler may be there now)."""
    why = why_stale(package)
    if why is None and _not_compiled(package):
        why = f"the last build: {_not_compiled(package)[2:]}"
    return why


def _not_compiled(package: Path) -> str:
    """``": why"`` when the build could not compile, else ``""``."""
    why = (_record(package) or {}).get(NOT_COMPILED)
    return f": {NOT_COMPILED} ({why})" if why else ""


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports the named modules from their ``.py``, never from an extension."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.paths.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


_decided = False


def use_fresh(package: Path = PACKAGE) -> str:
    """Run the compiled group only if it was built from the sources present (see above);
    decided once per process. Returns ``STATUS``."""
    global STATUS, _decided
    if _decided:
        return STATUS
    _decided = True
    present = bool(_extensions(package))
    asked = os.environ.get("CXPULSE_PURE") == "1"
    why = "CXPULSE_PURE=1" if asked and present else why_stale(package)
    if why is None:
        STATUS = "compiled" if present else "python" + _not_compiled(package)
        return STATUS
    sys.meta_path.insert(0, _SourceFirst({module_name(package, p): p for p in compiled(package)}))
    STATUS = f"python: {why}"
    if not asked:
        log.warning("the compiled core is not used (%s): running it as Python; %s", why, REBUILD)
    return STATUS


if __name__ == "__main__":
    if sys.argv[1:] == ["--rebuild"]:  # the Makefile builds again when this prints a reason
        print(why_build_again() or "")
    else:  # the Makefile's list of what a build is made from
        print(" ".join(p.relative_to(PACKAGE.parent).as_posix() for p in sources(PACKAGE)))
