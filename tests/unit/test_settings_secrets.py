"""The ClickHouse password is a SecretStr from the moment settings are read, and no
message, repr or dump shows it: not the settings, not an error quoting the URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxpulse.sinks.clickhouse import open_backend
from cxpulse.sinks.errors import SinkConfigError, SinkUnavailable
from cxpulse.sinks.targets import parse_chdb_url, parse_server_url, redact
from cxpulse.streams.dev.broker import free_port
from cxpulse.streams.settings import ConfigError, load_settings

PASSWORD = "Pw-7f3a9c1e"  # distinctive, so a leak anywhere is found by a plain search
ROOT = Path(__file__).resolve().parents[2]


def test_a_password_in_the_url_becomes_a_secret_and_leaves_the_url() -> None:
    settings = load_settings(clickhouse_url=f"clickhouse://app:{PASSWORD}@db.example:9000/cx")
    assert settings.clickhouse_url == "clickhouse://app@db.example:9000/cx"
    assert settings.clickhouse_password is not None
    assert settings.clickhouse_password.get_secret_value() == PASSWORD
    assert settings.clickhouse_display_url == "clickhouse://app:***@db.example:9000/cx"
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.model_dump()),
        settings.model_dump_json(),
        repr(settings.model_copy(update={"web_port": 1})),
    ):
        assert PASSWORD not in shown


def test_a_percent_escaped_password_is_decoded_and_one_with_slashes_still_found() -> None:
    settings = load_settings(clickhouse_url="clickhouse://u:a%40b@h/cx")
    assert settings.clickhouse_password is not None
    assert settings.clickhouse_password.get_secret_value() == "a@b"
    odd = "p/w#x@y"
    settings = load_settings(clickhouse_url=f"clickhouse://u:{odd}@h:9000/cx")
    assert settings.clickhouse_url == "clickhouse://u@h:9000/cx"
    assert settings.clickhouse_password is not None
    assert settings.clickhouse_password.get_secret_value() == odd


def test_the_password_variable_wins_over_the_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXPULSE_CLICKHOUSE_URL", "clickhouse://u:from-url@h:9000/cx")
    monkeypatch.setenv("CXPULSE_CLICKHOUSE_PASSWORD", PASSWORD)
    settings = load_settings()
    assert settings.clickhouse_url == "clickhouse://u@h:9000/cx"
    assert settings.clickhouse_password is not None
    assert settings.clickhouse_password.get_secret_value() == PASSWORD
    assert "from-url" not in repr(settings) and PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    "url",
    [
        f"clickhouses://u:{PASSWORD}@h:9000/db",  # the mistyped scheme
        f"u:{PASSWORD}@h:9000/db",  # no scheme at all
    ],
)
def test_a_bad_url_is_one_line_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(clickhouse_url=url)
    assert err.value.code == 2
    assert PASSWORD not in str(err.value) and "\n" not in str(err.value)
    assert "CXPULSE_CLICKHOUSE_URL" in str(err.value)


def test_secret_settings_are_never_quoted_in_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(webhook_secret=12345)
    assert "12345" not in str(err.value) and "***" in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        f"clickhouses://u:{PASSWORD}@h:9000/db",
        f"clickhouse://u:{PASSWORD}@h:notaport/db",
        f"clickhouse://u:{PASSWORD}@/db",
        f"clickhouse://u:{PASSWORD}@h:9000/a/b",
        f"chdb://u:{PASSWORD}@h/dir",
    ],
)
def test_sink_url_errors_redact_the_password(url: str) -> None:
    with pytest.raises(SinkConfigError) as err:
        if url.startswith("chdb://"):
            parse_chdb_url(url)
        elif url.startswith("clickhouse://"):
            parse_server_url(url)
        else:
            open_backend(url)
    assert PASSWORD not in str(err.value)
    assert ":***@" in str(err.value)


def test_redact_masks_any_scheme_and_keeps_urls_without_password() -> None:
    assert redact(f"clickhouses://u:{PASSWORD}@h:9000/db") == "clickhouses://u:***@h:9000/db"
    assert redact("clickhouse://u@h:9000/db") == "clickhouse://u@h:9000/db"
    assert redact("chdb:///./var/chdb") == "chdb:///./var/chdb"


def test_parsed_server_arguments_keep_the_password_secret() -> None:
    cfg = parse_server_url(f"clickhouse://u:{PASSWORD}@h:9000/db")
    assert PASSWORD not in repr(cfg)
    assert cfg["password"].get_secret_value() == PASSWORD


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    port = free_port()  # nothing listens there: the connection is refused
    with pytest.raises(SinkUnavailable) as err:
        open_backend(f"clickhouse://u:{PASSWORD}@127.0.0.1:{port}/db?connect_timeout=2")
    assert PASSWORD not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


def test_cxpulse_with_a_mistyped_scheme_prints_one_line_and_exits_2() -> None:
    env = dict(os.environ, CXPULSE_CLICKHOUSE_URL=f"clickhouses://u:{PASSWORD}@h:9000/db")
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", "query", "SELECT 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert PASSWORD not in done.stdout + done.stderr
    assert done.stderr.startswith("cxpulse: configuration error: CXPULSE_CLICKHOUSE_URL=")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_faust_app_and_its_runtime_hold_no_password(tmp_path: Path) -> None:
    """What Faust's USR1 dump and its conf could show: the app's settings, the runtime."""
    from cxpulse.streams.app import create_app

    settings = load_settings(
        clickhouse_url=f"clickhouse://app:{PASSWORD}@127.0.0.1:9000/cx", data_dir=tmp_path
    )
    app = create_app(settings, connect=lambda: None)  # type: ignore[arg-type,return-value]
    conf = {k: repr(v) for k, v in vars(app.conf).items()}
    assert PASSWORD not in repr(conf)
    assert PASSWORD not in repr(vars(app.cxpulse_runtime))  # type: ignore[attr-defined]
