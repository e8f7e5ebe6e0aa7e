"""The wheel: one installed namespace, and a client install without the worker's dependencies.

Builds a non-editable wheel from the checkout's files, installs it WITHOUT extras into a
fresh venv (its base requirements come from the package index, as a user's would), and
runs the client there from a project directory that has packages of its own named
``schemas`` and ``streams``: ``from cxpulse import Publisher`` validates and encodes an
event, ``cxpulse publish`` sends a file to the session's broker, ``cxpulse model`` reads
the shipped model, and ``cxpulse worker`` ends with one line naming the worker extra.
Faust, chDB and the sentiment analysers are not installed there.

Slow (about a minute: a wheel build, which compiles the core, and a venv). In CI (CI set)
it never skips; outside CI it skips only when the package index cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cxpulse.streams.dev.broker import EmbeddedBroker

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("streams", "schemas", "sinks")
#: Installed only with the worker extra (pip install 'cxpulse[worker]').
WORKER_ONLY = ("faust", "aiokafka", "chdb", "clickhouse_driver", "jieba", "vaderSentiment")


def _index_reachable() -> bool:
    """Whether pip's package index answers (pip's own configuration, else PyPI)."""
    url = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(parts.path).exists()
    try:
        socket.create_connection((parts.hostname or "", parts.port or 443), timeout=5).close()
    except OSError:
        return False
    return True


def _run(
    argv: list[str], cwd: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean = {k: v for k, v in clean.items() if not k.startswith("CXPULSE_")}
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**clean, **env}
    )


def _ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, f"{run.args}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


def _build_wheel(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Path:
    """A non-editable wheel built from a copy of the checkout's package files."""
    if not os.environ.get("CI") and not _index_reachable():
        pytest.skip("the package index is not reachable: the build and the client install need it")
    src = tmp_path_factory.mktemp("src")
    # the checkout's own compiled build (make native) stays behind: the wheel compiles its own
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "native.json")
    for name in ("cxpulse", *TOPS):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    _ok(_run(argv, src, **env))
    (found,) = out.glob("cxpulse-*.whl")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_wheel(tmp_path_factory)


@pytest.fixture(scope="module")
def client(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel and its base requirements only: its bin directory."""
    venv = tmp_path_factory.mktemp("client-venv")
    _ok(_run([sys.executable, "-m", "venv", str(venv)], venv))
    bin_dir = venv / "bin"
    _ok(
        _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], venv, timeout=600)
    )
    yield bin_dir


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: packages of its own named schemas and streams."""
    for name in ("schemas", "streams"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'the project ({name})'\n")
    (tmp_path / "schemas" / "envelope.py").write_text("OWNER = 'the project (envelope)'\n")
    return tmp_path


def test_the_wheel_holds_one_namespace_and_its_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    name_version = "-".join(wheel.name.split("-")[:2])  # cxpulse-0.1.0-cp311-...whl
    assert tops == {"cxpulse", f"{name_version}.dist-info"}, sorted(tops)
    for top in TOPS:
        for init in (ROOT / top).rglob("__init__.py"):
            assert f"cxpulse/{init.relative_to(ROOT).as_posix()}" in names, init
        for module in (ROOT / top).rglob("*.py"):
            assert f"cxpulse/{module.relative_to(ROOT).as_posix()}" in names, module
    assert "cxpulse/__init__.py" in names
    assert "cxpulse/schemas/touchpoint_event.v1.json" in names
    assert "cxpulse/streams/default_model.yaml" in names
    assert "cxpulse/streams/data/console.html" in names  # GET /console serves it
    # the scoring core and the rules compiled (setup.py), beside their sources, with the
    # record of what they were built from (cxpulse/native.py)
    assert "cxpulse/native.json" in names
    compiled = {n.split(".")[0] for n in names if n.endswith(".so")}
    assert "cxpulse/native__mypyc" in compiled, sorted(compiled)
    for module in ("streams/core/apply", "streams/core/score", "streams/rules/customer"):
        assert f"cxpulse/{module}" in compiled, sorted(compiled)
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "cxpulse = cxpulse.streams.cli:main" in text


def test_the_client_install_has_no_worker_dependencies(client: Path, project: Path) -> None:
    code = (
        "import importlib.util, json\n"
        f"print(json.dumps([m for m in {WORKER_ONLY!r} if importlib.util.find_spec(m)]))\n"
    )
    assert json.loads(_ok(_run([str(client / "python"), "-c", code], project))) == []


def test_the_sdk_works_beside_a_project_of_its_own(client: Path, project: Path) -> None:
    code = """
import importlib, json, sys
import schemas, streams
own = "schemas"  # the project's schemas package, and its envelope module beside ours
envelope = importlib.import_module(f"{own}.envelope")
from cxpulse import Publisher, TouchpointEvent, decode_message, encode_batch, validate_event
from cxpulse.streams.dev.sample_events import sample_events

event = TouchpointEvent.model_validate(sample_events(seed=1)[0])
events, rejected = decode_message(encode_batch([event]))
assert events == [event] and rejected == [], (events, rejected)
assert isinstance(validate_event({"channel": "fax"}), str)
print(json.dumps({
    "project": [schemas.OWNER, envelope.OWNER, streams.OWNER],
    "publisher": Publisher.__module__,
    "cxpulse": sorted({m.split(".")[1] for m in sys.modules if m.startswith("cxpulse.")}),
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & {"faust", "chdb", "jieba"}),
    "native": importlib.import_module("cxpulse.native").STATUS,
}))
"""
    out = json.loads(_ok(_run([str(client / "python"), "-c", code], project)))
    assert out["project"] == [
        "the project (schemas)",
        "the project (envelope)",
        "the project (streams)",
    ]
    assert out["publisher"] == "cxpulse.streams.publisher"
    assert out["heavy"] == []
    assert out["native"] == "compiled"  # the installed sources are the ones it was built from


def test_client_commands_run_on_the_base_install(
    client: Path,
    project: Path,
    kafka_broker: EmbeddedBroker,
    unique_topic: Callable[[str], str],
) -> None:
    cxpulse = str(client / "cxpulse")
    model = _ok(_run([cxpulse, "model", "show-default"], project))
    (project / "model.yaml").write_text(model)
    _ok(_run([cxpulse, "model", "check", "model.yaml"], project))

    lines = _ok(
        _run(
            [
                str(client / "python"),
                "-c",
                "import json\n"
                "from cxpulse.streams.dev.sample_events import sample_events\n"
                "for e in sample_events(seed=2)[:25]: print(json.dumps(e))\n",
            ],
            project,
        )
    )
    (project / "events.jsonl").write_text(lines)
    prefix = unique_topic("client")
    out = _ok(
        _run(
            [cxpulse, "publish", "events.jsonl"],
            project,
            CXPULSE_KAFKA_URL=kafka_broker.url,
            CXPULSE_TOPIC_PREFIX=prefix,
        )
    )
    assert "sent 25 events" in out and f"{prefix}.touchpoints" in out, out


@pytest.mark.parametrize("command", [["worker"], ["demo"]])
def test_a_worker_command_names_the_extra_in_one_line(
    client: Path, project: Path, command: list[str]
) -> None:
    run = _run([str(client / "cxpulse"), *command], project, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"cxpulse: {command[0]} needs the worker's dependencies"), line
    assert line.endswith("pip install 'cxpulse[worker]'"), line


def test_a_build_that_cannot_compile_installs_the_python_core_and_says_why(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A machine without a working C compiler (CC=false) still gets a whole package: no
    compiled module at all (the group is all or nothing), and a record of why, which the
    worker's start-up line shows (cxpulse/native.py)."""
    built = zipfile.ZipFile(_build_wheel(tmp_path_factory, CC="false"))
    names = set(built.namelist())
    assert not [n for n in names if n.endswith(".so")]
    assert "cxpulse/streams/core/apply.py" in names
    record = json.loads(built.read("cxpulse/native.json"))
    assert record == {"not compiled": "CompileError from false"}
