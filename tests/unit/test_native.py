"""The compiled core (setup.py, cxpulse/native.py): it runs, it gives the outputs the Python
modules give, and a compiled build older than its source is never run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cxpulse.streams.core.apply
import cxpulse.streams.rules.customer
from cxpulse import native

ROOT = Path(__file__).resolve().parents[2]
PURE = os.environ.get("CXPULSE_PURE") == "1"


def _is_extension(module: object) -> bool:
    return str(getattr(module, "__file__", "")).endswith(".so")


@pytest.mark.skipif(PURE, reason="CXPULSE_PURE=1 runs the core as Python, as asked")
def test_the_suite_runs_the_compiled_core() -> None:
    """make test compiles first (make native), so the tests run what a worker runs. A
    machine without a C compiler runs it as Python: outside CI that skips, with how."""
    if native.NOT_COMPILED in native.STATUS and not os.environ.get("CI"):
        pytest.skip(f"{native.STATUS}: install gcc and Python's headers, then make native")
    assert native.STATUS == "compiled", f"{native.STATUS}: run `make native` (or CXPULSE_PURE=1)"
    assert _is_extension(cxpulse.streams.core.apply)
    assert _is_extension(cxpulse.streams.rules.customer)


def _package(root: Path, *, so: bool = True) -> Path:
    """A stand-in ``cxpulse`` directory: two compiled sources, their dependencies."""
    package = root / "cxpulse"
    for rel, text in {
        "streams/core/score.py": "X = 1\n",
        "streams/core/__init__.py": "",
        "streams/rules/low_score.py": "Y = 2\n",
        "schemas/scoring.py": "Z = 3\n",
        "streams/pipeline/records.py": "W = 4\n",
        "streams/state/health.py": "U = 6\n",
    }.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    if so:
        (package / "streams/core/score.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    return package


def test_a_build_is_fresh_until_a_source_it_was_built_from_changes(tmp_path: Path) -> None:
    package = _package(tmp_path)
    native.write_manifest(package)
    built = json.loads((package / native.MANIFEST).read_text())
    assert sorted(built) == [
        "schemas/scoring.py",
        "streams/core/score.py",
        "streams/pipeline/records.py",
        "streams/rules/low_score.py",
        "streams/state/health.py",
    ]
    assert native.why_stale(package) is None

    (package / "schemas/scoring.py").write_text("Z = 30\n")  # a dependency's types
    assert native.why_stale(package) == "schemas/scoring.py changed since it was compiled"
    native.write_manifest(package)
    (package / "streams/rules/new_rule.py").write_text("V = 5\n")  # a module added since
    assert native.why_stale(package) == "streams/rules/new_rule.py is not in the compiled build"
    native.write_manifest(package)
    (package / "streams/rules/new_rule.py").unlink()  # a module compiled, then deleted
    assert native.why_stale(package) == "streams/rules/new_rule.py was compiled and is gone"
    assert native.why_build_again(package) == native.why_stale(package)
    (package / native.MANIFEST).unlink()
    assert native.why_stale(package) == "compiled modules without native.json"


def test_without_compiled_modules_nothing_is_stale(tmp_path: Path) -> None:
    package = _package(tmp_path, so=False)
    assert native.why_stale(package) is None  # a pure build (CXPULSE_PURE=1): no record
    assert native._not_compiled(package) == ""


def test_a_build_that_could_not_compile_says_why(tmp_path: Path) -> None:
    package = _package(tmp_path, so=False)
    native.write_not_compiled(package, "CompileError from gcc")
    assert native.why_stale(package) is None
    assert native._not_compiled(package) == ": not compiled (CompileError from gcc)"
    assert native.why_build_again(package) == "the last build: not compiled (CompileError from gcc)"
    # compiled modules of an earlier build beside that record are not run
    (package / "streams/core/score.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert native.why_stale(package) == (
        "compiled modules left by an earlier build; the last not compiled"
    )


def _copy_of_the_package(to: Path) -> Path:
    """The checkout's package with its compiled build, as real directories."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "cxpulse", to / "cxpulse", symlinks=False, ignore=ignore)
    return to


def _imported(where: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=where,
        env={**clean, "PYTHONPATH": str(where), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


WHICH = """
import json
from cxpulse import native
import cxpulse.streams.core.apply as apply, cxpulse.streams.core.times as times
print(json.dumps({"status": native.STATUS, "apply": apply.__file__, "times": times.__file__,
                  "edited": getattr(times, "EDITED", None)}))
"""


@pytest.mark.skipif(PURE, reason="CXPULSE_PURE=1: no compiled build to test")
def test_an_edited_source_runs_as_python_never_its_older_build(tmp_path: Path) -> None:
    where = _copy_of_the_package(tmp_path)
    fresh = _imported(where, WHICH)
    assert fresh.returncode == 0, fresh.stderr
    out = json.loads(fresh.stdout)
    assert out["status"] == "compiled" and out["apply"].startswith(str(where))
    assert out["apply"].endswith(".so") and out["times"].endswith(".so")

    times = where / "cxpulse/streams/core/times.py"
    times.write_text(times.read_text() + "\nEDITED = 'the source'\n")
    stale = _imported(where, WHICH)
    assert stale.returncode == 0, stale.stderr
    out = json.loads(stale.stdout)
    assert out["status"] == "python: streams/core/times.py changed since it was compiled"
    # the whole group runs as Python (its compiled modules call each other directly)
    assert out["apply"].endswith("apply.py") and out["times"].endswith("times.py")
    assert out["edited"] == "the source"
    (warning,) = stale.stderr.strip().splitlines()
    assert "streams/core/times.py changed since it was compiled" in warning
    assert "make native" in warning

    asked = _imported(_copy_of_the_package(tmp_path / "again"), WHICH, CXPULSE_PURE="1")
    out = json.loads(asked.stdout)
    assert out["status"] == "python: CXPULSE_PURE=1" and out["apply"].endswith("apply.py")
    assert asked.stderr == ""  # asked for: no warning


REPLAY = """
import hashlib, json, sys
from collections import defaultdict
from datetime import UTC, datetime
import msgspec
from cxpulse import native
from cxpulse.streams.core import apply_events, score_update
from cxpulse.streams.model_check import load_model
from cxpulse.streams.routing import Source, route
from cxpulse.streams.rules.customer import customer_alerts
from tests.benchmarks.pipeline import make_events
from cxpulse.schemas.events import TouchpointEvent

model, now = load_model(), datetime(2026, 12, 5, 12, tzinfo=UTC)
events = [TouchpointEvent.model_validate(d).model_dump_json(exclude_none=True).encode()
          for d in make_events(4000, 300, 11)]
digest, states = hashlib.sha256(), {}
for i in range(0, len(events), 250):  # takes of 250 events, as a worker's
    by_customer = defaultdict(list)
    message = b"[" + b",".join(events[i:i + 250]) + b"]"
    for batch in route([(Source("raw", 0, i), message)], 4).by_partition.values():
        for e in batch:
            by_customer[e.customer_id].append(e)
    for cid, batch in by_customer.items():
        before = states.get(cid)
        after, moments = apply_events(before, batch, model, now, {})
        digest.update(msgspec.json.encode(moments))
        state, alerts = customer_alerts(before, after, batch, moments, model, now)
        states[cid] = state
        digest.update(msgspec.json.encode(score_update(state, model)))
        digest.update(json.dumps([a.model_dump(mode="json") for a in alerts]).encode())
for cid in sorted(states):
    digest.update(msgspec.json.encode(states[cid]))
print(json.dumps({"status": native.STATUS, "digest": digest.hexdigest(), "n": len(states)}))
"""


@pytest.mark.slow
@pytest.mark.skipif(PURE, reason="CXPULSE_PURE=1: no compiled build to compare with")
def test_the_compiled_core_gives_the_python_core_s_outputs_to_the_byte() -> None:
    """Moments, score updates, alerts and states of 4,000 simulated events, byte for byte."""
    runs = {}
    for pure in ("0", "1"):
        run = _imported(ROOT, REPLAY, CXPULSE_PURE=pure)
        assert run.returncode == 0, run.stderr[-3000:]
        runs[pure] = json.loads(run.stdout)
    assert runs["0"]["status"] == "compiled"
    assert runs["1"]["status"] == "python: CXPULSE_PURE=1"
    assert runs["0"]["n"] > 200
    assert runs["0"]["digest"] == runs["1"]["digest"]
