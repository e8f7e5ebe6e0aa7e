"""One installed namespace (cxpulse.streams, cxpulse.schemas, cxpulse.sinks): the client API
imports without the worker's dependencies, and no module of the tree is imported under a
second name. Each check runs in a fresh interpreter, in a directory with a project's own
``schemas`` and ``streams`` packages, so what the test process imported does not count."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cxpulse
from cxpulse.streams.cli import WORKER_EXTRA_MODULES, missing_extra

ROOT = Path(__file__).resolve().parents[2]

#: What a client install (`pip install cxpulse`) does not have.
WORKER_ONLY = ("faust", "aiokafka", "chdb", "clickhouse_driver", "jieba", "vaderSentiment")


def run_python(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter in ``cwd``; its stdout (it fails on an error)."""
    (cwd / "schemas").mkdir(exist_ok=True)
    (cwd / "schemas" / "__init__.py").write_text("MINE = True\n")
    (cwd / "streams").mkdir(exist_ok=True)
    (cwd / "streams" / "__init__.py").write_text("MINE = True\n")
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run.stdout


def test_the_client_api_imports_without_the_worker_dependencies(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import cxpulse\n"
        "from cxpulse import Publisher, TouchpointEvent, load_settings, encode_batch\n"
        "import cxpulse.streams.cli\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    imported = set(json.loads(run_python(code, tmp_path)))
    assert not imported & set(WORKER_ONLY), sorted(imported & set(WORKER_ONLY))
    # kafka-python (a base dependency) imports zstandard for its codecs when it is
    # installed, as it is beside the worker extra; a client install works without it
    worker = WORKER_EXTRA_MODULES - {"zstandard"}
    assert not imported & worker, sorted(imported & worker)


def test_importing_cxpulse_imports_no_part_of_the_tree(tmp_path: Path) -> None:
    """``import cxpulse`` is cheap: the exports load on first use."""
    code = "import sys, cxpulse; print(sorted(m for m in sys.modules if m.startswith('cxpulse')))"
    assert run_python(code, tmp_path).strip() == "['cxpulse']"


def test_the_worker_imports_nothing_of_the_dev_tools(tmp_path: Path) -> None:
    """The simulator, the demo, the sample events and the broker launcher live in
    ``cxpulse.streams.dev``: the worker's app, its agents and its sinks load none of them."""
    code = (
        "import sys\n"
        "import cxpulse.streams.worker, cxpulse.streams.app, cxpulse.sinks.writer\n"
        "print(sorted(m for m in sys.modules if m.startswith('cxpulse.streams.dev')))\n"
    )
    assert run_python(code, tmp_path).strip() == "[]"


def test_every_module_has_one_name(tmp_path: Path) -> None:
    """Importing every module of the tree (the worker too) never imports ``streams``,
    ``schemas`` or ``sinks`` as top-level names: a module imported twice would define its
    pydantic classes twice and register its Prometheus metrics twice. The directory's own
    ``schemas`` and ``streams`` packages stay the project's."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import cxpulse\n"
        "names = []\n"
        "for top in ('streams', 'schemas', 'sinks'):\n"
        "    pkg = importlib.import_module('cxpulse.' + top)\n"
        "    names.append(pkg.__name__)\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not info.name.endswith('__main__'):\n"
        "            importlib.import_module(info.name)\n"
        "            names.append(info.name)\n"
        "tops = {'streams', 'schemas', 'sinks'}\n"
        "old = sorted(m for m in sys.modules if m.split('.')[0] in tops\n"
        "             and not getattr(sys.modules[m], 'MINE', False))\n"
        "print(json.dumps({'imported': names, 'old': old}))\n"
    )
    result = json.loads(run_python(code, tmp_path))
    assert result["old"] == []
    for top in ("streams", "schemas", "sinks"):
        for init in (ROOT / top).rglob("*.py"):
            parts = init.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            name = "cxpulse." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            assert name in result["imported"], f"{init} is not reached as {name}"


def test_the_exports_are_listed_and_resolve() -> None:
    assert sorted(cxpulse.__all__) == sorted(cxpulse._EXPORTS)
    for name in cxpulse.__all__:
        value = getattr(cxpulse, name)
        assert value is getattr(sys.modules[cxpulse._EXPORTS[name]], name)
    with pytest.raises(AttributeError):
        cxpulse.Worker  # noqa: B018


def test_a_missing_worker_module_is_one_line_naming_the_extra() -> None:
    line = missing_extra(ModuleNotFoundError("No module named 'faust'", name="faust"))
    assert line is not None and "\n" not in line
    assert "faust is not installed" in line and "pip install 'cxpulse[worker]'" in line
    assert missing_extra(ModuleNotFoundError("No module named 'chdb.x'", name="chdb.x"))
    # any other missing module is a bug, not a missing extra: it keeps its traceback
    assert missing_extra(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None


def test_every_worker_extra_dependency_is_known_to_the_cli() -> None:
    """Each distribution of the `worker` extra provides a module the CLI recognises, so a
    command that needs it names the extra instead of showing a traceback."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    provides: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    for requirement in project["optional-dependencies"]["worker"]:
        dist = requirement.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip()
        modules = provides.get(dist.lower().replace("_", "-"), set())
        assert modules, f"{dist} is not installed in this venv: make install"
        assert modules & WORKER_EXTRA_MODULES, f"{dist} ({sorted(modules)}) not in the CLI's list"
    # the base dependencies are not worker modules
    for requirement in project["dependencies"]:
        dist = requirement.split("=")[0].split(">")[0].split("<")[0].strip()
        assert not provides.get(dist.lower().replace("_", "-"), set()) & WORKER_EXTRA_MODULES
