"""The worker's event loop (CXPULSE_EVENT_LOOP): uvloop by default, asyncio on request,
and one line saying what to do when uvloop is asked for and missing; and its GIL switch
interval (CXPULSE_GIL_SWITCH_MS). Each test runs the choice in a child interpreter: an
event loop policy and the switch interval are process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cxpulse.streams.settings import load_settings


def _run(
    code: str, env_choice: str | None = None, **env_more: str
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **env_more}
    if env_choice is not None:
        env["CXPULSE_EVENT_LOOP"] = env_choice
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


CHOOSE = """
    import asyncio, faust
    from cxpulse.streams.settings import load_settings
    from cxpulse.streams.worker import event_loop_name, use_event_loop

    use_event_loop(load_settings().event_loop)
    app = faust.App("loop-probe", broker="kafka://127.0.0.1:1")  # never connected
    print(type(app.loop).__module__, "|", event_loop_name(app.loop))
"""


def test_the_worker_runs_on_uvloop_by_default() -> None:
    assert load_settings().event_loop == "uvloop"
    done = _run(CHOOSE)
    assert done.returncode == 0, done.stderr
    module, name = done.stdout.strip().split(" | ")
    assert module.startswith("uvloop"), done.stdout
    import uvloop

    assert name == f"uvloop {uvloop.__version__}"


def test_asyncio_on_request() -> None:
    done = _run(CHOOSE, "asyncio")
    assert done.returncode == 0, done.stderr
    module, name = done.stdout.strip().split(" | ")
    assert module.startswith("asyncio") and name == "asyncio", done.stdout


def test_uvloop_asked_for_and_missing_is_one_line_with_the_fix() -> None:
    done = _run(
        """
        import sys
        sys.modules["uvloop"] = None  # as if not installed
        from cxpulse.streams.worker import use_event_loop
        from cxpulse.streams.settings import ConfigError
        try:
            use_event_loop("uvloop")
        except ConfigError as exc:
            print(exc.code, "|", exc)
        """
    )
    assert done.returncode == 0, done.stderr
    code, line = done.stdout.strip().split(" | ")
    assert code == "2" and "\n" not in line
    assert "uvloop is not installed" in line
    assert "pip install 'cxpulse[worker]'" in line and "CXPULSE_EVENT_LOOP=asyncio" in line


def test_an_unknown_loop_is_refused_by_name() -> None:
    from cxpulse.streams.settings import ConfigError

    with pytest.raises(ConfigError, match="CXPULSE_EVENT_LOOP"):
        load_settings(event_loop="trio")


SWITCH = """
    import sys
    from cxpulse.streams.settings import ConfigError, load_settings
    from cxpulse.streams.worker import use_gil_switch

    try:
        use_gil_switch(load_settings().gil_switch_ms)
    except ConfigError as exc:
        sys.exit(str(exc))
    print(sys.getswitchinterval())
"""


def test_the_gil_switch_interval_is_half_a_millisecond_unless_set() -> None:
    done = _run(SWITCH)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(0.0005)
    done = _run(SWITCH, CXPULSE_GIL_SWITCH_MS="5")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(0.005)
    done = _run(SWITCH, CXPULSE_GIL_SWITCH_MS="0")
    assert done.returncode != 0
    assert "CXPULSE_GIL_SWITCH_MS='0'" in done.stderr and len(done.stderr.splitlines()) == 1
