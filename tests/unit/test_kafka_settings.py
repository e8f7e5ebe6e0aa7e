"""Kafka connection settings: every form of CXPULSE_KAFKA_URL, the one-line errors of the
malformed ones, the security settings and their checks, and what each client library is
given for each protocol and mechanism. No broker needed; the SASL password must never
show in a repr, an error or a log line."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from cxpulse.streams.kafka_config import (
    PLAINTEXT,
    aiokafka_config,
    describe,
    faust_broker,
    faust_credentials,
    kafka_env,
    kafka_python_config,
    ssl_context,
)
from cxpulse.streams.kafka_url import parse_bootstrap
from cxpulse.streams.settings import ConfigError, Settings, load_settings

PASSWORD = "Sup3r-s3cret-Pw!"

KAFKA_ENV = [
    "CXPULSE_KAFKA_URL",
    "CXPULSE_KAFKA_SECURITY_PROTOCOL",
    "CXPULSE_KAFKA_SASL_MECHANISM",
    "CXPULSE_KAFKA_SASL_USERNAME",
    "CXPULSE_KAFKA_SASL_PASSWORD",
    "CXPULSE_KAFKA_SSL_CAFILE",
    "CXPULSE_KAFKA_SSL_CERTFILE",
    "CXPULSE_KAFKA_SSL_KEYFILE",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KAFKA_ENV:
        monkeypatch.delenv(name, raising=False)


def error_of(**settings: object) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(**settings)
    assert err.value.code == 2
    message = str(err.value)
    assert "\n" not in message
    return message


# -- the bootstrap list -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        ("localhost:9092,other:9092", ["localhost:9092", "other:9092"]),
        ("kafka://127.0.0.1:9092", ["127.0.0.1:9092"]),
        ("kafka://b1:9092,b2:9093", ["b1:9092", "b2:9093"]),
        ("kafka://b1:9092;b2:9093", ["b1:9092", "b2:9093"]),
        ("kafka://b1:9092;kafka://b2:9093", ["b1:9092", "b2:9093"]),
        ("KAFKA://B1.example.com:9092", ["B1.example.com:9092"]),
        (" b1:9092 , b2:9092 ,", ["b1:9092", "b2:9092"]),
        ("broker", ["broker:9092"]),
        ("kafka://broker/", ["broker:9092"]),
        ("[::1]:9092", ["[::1]:9092"]),
        ("kafka://[fe80::1]:19092,10.0.0.7:9092", ["[fe80::1]:19092", "10.0.0.7:9092"]),
        ("kafka_1:9092", ["kafka_1:9092"]),
    ],
)
def test_every_bootstrap_form_is_accepted(url: str, servers: list[str]) -> None:
    settings = load_settings(kafka_url=url)
    assert settings.bootstrap_servers == servers
    assert settings.kafka_url == "kafka://" + ",".join(servers)
    assert faust_broker(settings) == [f"kafka://{s}" for s in servers]


def test_the_environment_form_everyone_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXPULSE_KAFKA_URL", "localhost:9092,other:9092")
    assert load_settings().bootstrap_servers == ["localhost:9092", "other:9092"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://", "names no host"),
        ("", "names no broker"),
        (",;", "names no broker"),
        ("kafka://host:notaport", "the port of 'host:notaport' is not a number"),
        ("host:", "is not a number"),
        ("kafka://:9092", "names no host"),
        ("host:0", "not in 1..65535"),
        ("host:65536", "not in 1..65535"),
        ("good:9092,bad:x", "the port of 'bad:x' is not a number"),
        ("ssl://host:9093", "the ssl:// scheme is not understood"),
        ("SASL_SSL://host:9093", "CXPULSE_KAFKA_SECURITY_PROTOCOL"),
        ("http://host:9092", "scheme is not understood"),
        ("::1:9092", "in brackets"),
        ("[::1:9092", "is not [IPv6 address]:port"),
        ("ho st:9092", "'ho st' is not a host name"),
        ("kafka://host:9092/topic", "no path or query"),
    ],
)
def test_a_malformed_url_is_one_line_naming_the_setting_and_the_form(url: str, says: str) -> None:
    message = error_of(kafka_url=url)
    assert message.startswith("configuration error: CXPULSE_KAFKA_URL=")
    assert says in message
    assert "Value error" not in message


def test_the_kafka_url_drops_the_empty_case() -> None:
    assert "kafka://broker-1:9092,broker-2:9092" in error_of(kafka_url="kafka://")


def test_credentials_in_the_url_are_refused_and_masked() -> None:
    message = error_of(kafka_url=f"kafka://alice:{PASSWORD}@broker:9092")
    assert PASSWORD not in message
    assert "alice:***@" in message and "CXPULSE_KAFKA_SASL_PASSWORD" in message


def test_parse_bootstrap_is_usable_alone() -> None:
    assert parse_bootstrap("a:1;b") == [("a", 1), ("b", 9092)]
    with pytest.raises(ValueError, match="not a number"):
        parse_bootstrap("a:b")


# -- the security settings --------------------------------------------------------------------


def test_defaults_are_plaintext_without_login() -> None:
    settings = load_settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.kafka_sasl_mechanism == "PLAIN"
    config = kafka_python_config(settings)
    assert config == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None
    assert describe(settings) == "PLAINTEXT"


@pytest.mark.parametrize(
    ("given", "stored"),
    [("sasl_ssl", "SASL_SSL"), (" ssl ", "SSL"), ("sasl-plaintext", "SASL_PLAINTEXT")],
)
def test_the_protocol_is_read_in_any_case(given: str, stored: str) -> None:
    login = {"kafka_sasl_username": "u", "kafka_sasl_password": "p"} if "sasl" in given else {}
    assert load_settings(kafka_security_protocol=given, **login).kafka_security_protocol == stored


@pytest.mark.parametrize(
    ("given", "stored"),
    [("scram-sha-512", "SCRAM-SHA-512"), ("SCRAM_SHA_256", "SCRAM-SHA-256"), ("plain", "PLAIN")],
)
def test_the_mechanism_is_read_in_any_case(given: str, stored: str) -> None:
    assert load_settings(kafka_sasl_mechanism=given).kafka_sasl_mechanism == stored


def test_unknown_protocol_and_mechanism_list_the_choices() -> None:
    assert "give one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL" in error_of(
        kafka_security_protocol="TLS"
    )
    message = error_of(kafka_sasl_mechanism="GSSAPI")
    assert "CXPULSE_KAFKA_SASL_MECHANISM='GSSAPI'" in message
    assert "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512" in message


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_a_username_and_a_password(protocol: str) -> None:
    for login in ({}, {"kafka_sasl_username": "alice"}, {"kafka_sasl_password": PASSWORD}):
        message = error_of(kafka_security_protocol=protocol, **login)
        assert "CXPULSE_KAFKA_SASL_USERNAME and CXPULSE_KAFKA_SASL_PASSWORD" in message
        assert PASSWORD not in message


def test_a_login_without_sasl_is_refused_rather_than_ignored() -> None:
    message = error_of(kafka_sasl_username="alice", kafka_sasl_password=PASSWORD)
    assert "CXPULSE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not log in" in message
    assert PASSWORD not in message


def test_empty_variables_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXPULSE_KAFKA_SASL_USERNAME", "")
    monkeypatch.setenv("CXPULSE_KAFKA_SASL_PASSWORD", "")
    monkeypatch.setenv("CXPULSE_KAFKA_SSL_CAFILE", "")
    settings = load_settings()
    assert settings.kafka_sasl_username is None and settings.kafka_ssl_cafile is None


def test_tls_files_must_exist(tmp_path: Path) -> None:
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        message = error_of(kafka_security_protocol="SSL", **{name: tmp_path / "missing.pem"})
        assert f"CXPULSE_{name.upper()}=" in message and "no such file" in message


def test_tls_files_without_tls_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    for protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        login = (
            {"kafka_sasl_username": "u", "kafka_sasl_password": "p"} if "SASL" in protocol else {}
        )
        message = error_of(kafka_security_protocol=protocol, kafka_ssl_cafile=ca, **login)
        assert f"CXPULSE_KAFKA_SSL_CAFILE set but CXPULSE_KAFKA_SECURITY_PROTOCOL={protocol}" in (
            message
        )


def test_a_key_without_its_certificate_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("x")
    message = error_of(kafka_security_protocol="SSL", kafka_ssl_keyfile=key)
    assert "CXPULSE_KAFKA_SSL_KEYFILE is set without CXPULSE_KAFKA_SSL_CERTFILE" in message


def test_a_file_that_is_no_certificate_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    settings = load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=bad)
    with pytest.raises(ConfigError) as err:
        ssl_context(settings)
    assert str(err.value).startswith(f"CXPULSE_KAFKA_SSL_CAFILE={bad}: not a usable CA file")
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate either\n")
    settings = load_settings(kafka_security_protocol="SSL", kafka_ssl_certfile=cert)
    with pytest.raises(ConfigError, match="not a usable client certificate and key"):
        ssl_context(settings)


# -- what the clients are given ---------------------------------------------------------------


def sasl_settings(protocol: str, mechanism: str) -> Settings:
    return load_settings(
        kafka_url="b1:9093,b2:9093",
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="alice",
        kafka_sasl_password=PASSWORD,
    )


def test_ssl_gives_every_client_one_verifying_context() -> None:
    settings = load_settings(kafka_security_protocol="SSL")
    config = kafka_python_config(settings)
    assert config["security_protocol"] == "SSL"
    context = config["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "sasl_mechanism" not in config
    assert aiokafka_config(settings)["security_protocol"] == "SSL"
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_reaches_every_client_alike(protocol: str, mechanism: str) -> None:
    settings = sasl_settings(protocol, mechanism)
    expected = {
        "bootstrap_servers": ["b1:9093", "b2:9093"],
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD,
    }
    for config in (kafka_python_config(settings), aiokafka_config(settings)):
        assert {k: v for k, v in config.items() if k != "ssl_context"} == expected
        assert ("ssl_context" in config) == (protocol == "SASL_SSL")
    # Faust hands its credentials to aiokafka with its own mapping: the same result.
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    faust_side = credentials_to_aiokafka_auth(credentials)
    assert faust_side["security_protocol"] == protocol
    assert faust_side["sasl_mechanism"] == mechanism
    assert faust_side["sasl_plain_username"] == "alice"
    assert faust_side["sasl_plain_password"] == PASSWORD
    assert (faust_side["ssl_context"] is not None) == (protocol == "SASL_SSL")
    assert describe(settings) == f"{protocol} ({mechanism} as alice)"


def test_the_faust_app_gets_the_broker_list_and_credentials(tmp_path: Path) -> None:
    from cxpulse.streams.app import create_app

    settings = sasl_settings("SASL_SSL", "SCRAM-SHA-512").model_copy(update={"data_dir": tmp_path})
    app = create_app(settings)
    assert [str(u) for u in app.conf.broker] == ["kafka://b1:9093", "kafka://b2:9093"]
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)
    assert PASSWORD not in repr(app.conf.broker_credentials)


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    settings = sasl_settings("SASL_SSL", "SCRAM-SHA-512")
    assert isinstance(settings.kafka_sasl_password, object)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("cxpulse-test").info("settings %r %s", settings, settings)
    shown = [
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        repr(faust_credentials(settings)),
        describe(settings),
        caplog.text,
    ]
    for text in shown:
        assert PASSWORD not in text
    # A refused value of the password itself is never quoted either.
    message = error_of(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="alice",
        kafka_sasl_password=PASSWORD,
        kafka_sasl_mechanism="NOPE",
    )
    assert PASSWORD not in message


def test_child_environment_and_plaintext_overrides() -> None:
    settings = sasl_settings("SASL_PLAINTEXT", "SCRAM-SHA-256")
    env = kafka_env(settings)
    assert env["CXPULSE_KAFKA_URL"] == "kafka://b1:9093,b2:9093"
    assert env["CXPULSE_KAFKA_SASL_PASSWORD"] == PASSWORD
    assert env["CXPULSE_KAFKA_SSL_CAFILE"] is None
    assert load_settings(**{**settings.model_dump(), **PLAINTEXT}).kafka_security_protocol == (
        "PLAINTEXT"
    )


def test_every_step_reads_ahead_at_most_the_configured_messages(tmp_path: Path) -> None:
    """What a worker holds of its input besides the take it handles is bounded by
    ``CXPULSE_CONSUMER_BUFFER_MESSAGES`` (Faust's stream buffer, one per step), not by
    Faust's 4,096 messages, which of the SDK's ~250 KB messages was ~1 GiB."""
    from cxpulse.streams.app import create_app

    default = Settings(data_dir=tmp_path)
    assert default.consumer_buffer_messages == 256
    settings = default.model_copy(update={"consumer_buffer_messages": 8})
    app = create_app(settings)
    queues = {name: agent.channel.queue.maxsize for name, agent in app.agents.items()}
    assert {"experience", "touchpoint_health"} <= queues.keys()
    assert set(queues.values()) == {8}, queues
