"""All configuration in one pydantic-settings class (environment prefix ``CXPULSE_``).

A wrong value fails at start with one line naming the variable and the fix, rather than
somewhere deep inside a worker later.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxpulse.sinks.urls import redact_url, split_password, with_password_mark
from cxpulse.streams.kafka_url import (
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    format_address,
    parse_bootstrap,
)


class ConfigError(SystemExit):
    """A configuration problem, reported on one line (and exit status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2
        self.message = message

    def __str__(self) -> str:
        return self.message


class Settings(BaseSettings):
    """Every knob of a cxpulse process. Defaults run the embedded setup under ``./var``."""

    model_config = SettingsConfigDict(env_prefix="CXPULSE_", extra="ignore")

    kafka_url: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers: host:port[,host:port...], with or without "
        "kafka:// (TLS and SASL are chosen by CXPULSE_KAFKA_SECURITY_PROTOCOL)",
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT",
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL login over TLS)",
    )
    kafka_sasl_mechanism: str = Field(
        "PLAIN", description="with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, description="with SASL_*: the user name")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="with SASL_*: the password (never printed)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="with SSL/SASL_SSL: PEM file of the CA(s) that signed the brokers' "
        "certificates; unset = the system's trusted CAs",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="with SSL/SASL_SSL, for mTLS: PEM file of this client's certificate"
    )
    kafka_ssl_keyfile: Path | None = Field(
        None,
        description="with SSL/SASL_SSL, for mTLS: PEM file of the certificate's private key "
        "(unencrypted); unset = in CXPULSE_KAFKA_SSL_CERTFILE",
    )
    clickhouse_url: str = Field(
        "chdb:///./var/chdb",
        description="clickhouse://user:pass@host:9000/db (server) or chdb:///path (embedded); "
        "a password in it is moved to CXPULSE_CLICKHOUSE_PASSWORD when read",
    )
    clickhouse_password: SecretStr | None = Field(
        None, description="overrides the password in CXPULSE_CLICKHOUSE_URL (never printed)"
    )
    app_id: str = Field("cxpulse", description="Faust app id = Kafka consumer group")
    partitions: int = Field(4, ge=1, le=1024, description="partitions of every cxpulse topic")
    replication_factor: int = Field(1, ge=1, le=16, description="replication of every topic")
    topic_prefix: str = Field("cx", pattern=r"^[A-Za-z0-9._-]+$", description="topic name prefix")
    web_port: int = Field(
        6066, ge=0, le=65535, description="worker HTTP port (/metrics, /livez, /readyz)"
    )
    web_host: str = Field("0.0.0.0", description="worker HTTP bind address")
    ingest_host: str = Field(
        "127.0.0.1",
        description="cxpulse ingest bind address; any but a loopback one needs "
        "CXPULSE_INGEST_TOKEN",
    )
    ingest_port: int = Field(
        8080, ge=0, le=65535, description="cxpulse ingest HTTP port (POST /events, /metrics)"
    )
    ingest_token: SecretStr | None = Field(
        None,
        description="bearer token POST /events requires (16+ characters, never printed); "
        "unset = none, allowed on a loopback address only",
    )
    api_token: SecretStr | None = Field(
        None,
        description="bearer token of the worker's /api/cases and /console (16+ characters, "
        "never printed); unset = those pages refuse every request",
    )
    cases_check_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="how often a worker looks for overdue and expired cases of its partitions",
    )
    cases_answer_seconds: float = Field(
        10.0,
        gt=0,
        le=120,
        description="how long POST /api/cases/.../ack or /resolve waits for the case to "
        "change before answering 504",
    )
    ingest_max_body_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="largest POST /events body, after gzip is undone (larger: 413)",
    )
    data_dir: Path = Field(Path("./var"), description="local state: tables, chDB, logs")
    state_store: Literal["rocksdb", "memory"] = Field(
        "rocksdb",
        description="where the customer table lives: rocksdb = on local disk under data_dir "
        "(larger than memory; a restart recovers from disk plus the changelog's tail), "
        "memory = in memory (recovered from the whole changelog at start)",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="the worker's event loop: uvloop (libuv's, installed with the worker "
        "extra; the worker's main thread spent ~10 % less an event on it: docs/benchmarks.md) "
        "or asyncio (the standard library's)",
    )
    gil_switch_ms: float = Field(
        0.5,
        gt=0,
        le=100,
        description="how long the worker's main thread may hold the GIL while another "
        "thread waits for it (sys.setswitchinterval; Python's default is 5): its helper "
        "threads (feeding the rows and sentiment processes, the sink) need it briefly and "
        "often, and at 5 ms a take's rows were ready ~0.5 s after it (docs/benchmarks.md)",
    )
    state_cache_keys: int = Field(
        50_000,
        ge=0,
        description="customer states the rocksdb store keeps in memory besides the ones "
        "changed since the last checkpoint, each as its msgpack (~2.5 KB, at most ~6 KB: "
        "50,000 are ~120 MiB; a state not kept is read from disk and decompressed again)",
    )
    state_store_memory_mb: int = Field(
        64,
        ge=8,
        le=1 << 20,
        description="what the rocksdb store's RocksDB may hold in memory, for every "
        "partition of the worker together: the memtables (at most half of it) and the "
        "block cache share it (each partition had its own 32 MiB: 16 partitions took "
        "~350 MiB)",
    )
    rows_process: bool = Field(
        True,
        description="on the embedded ClickHouse (chDB), make the experience step's rows "
        "into their Arrow batches in a child process, off the event loop; false: on the "
        "event loop",
    )
    rows_process_priority: Literal["idle", "low"] = Field(
        "idle",
        description="the rows process's share of a busy machine: idle, only the CPU "
        "nothing else wants (SCHED_IDLE: the main thread keeps its core, and a worker "
        "keeps up with more events a second; a backlog ends with the rows still to make, "
        "~12 % slower to catch up in the benchmark); low, nice +10 (what a system "
        "without SCHED_IDLE always gets)",
    )
    score_process: bool = Field(
        True,
        description="score the experience step's customers in a child process, off the "
        "event loop (a state store on disk only); false: on the event loop",
    )
    sink_batch_size: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="rows per insert (a stateful step's: up to twice that while its commit "
        "before is under way)",
    )
    sink_flush_seconds: float = Field(1.0, gt=0, le=60, description="max wait before an insert")
    sink_retry_max_seconds: float = Field(30.0, gt=0, description="cap of the retry backoff")
    health_sink_failing_seconds: float = Field(
        120.0,
        gt=0,
        description="/healthz answers 503 once inserts into a table have failed this long",
    )
    ready_unreachable_seconds: float = Field(
        30.0,
        gt=0,
        description="/readyz answers 503 once Kafka has not answered, or inserts into "
        "ClickHouse have failed, for longer than this",
    )
    broker_session_timeout: float = Field(
        6.0, gt=0, description="Kafka consumer session timeout (s); small = fast first join"
    )
    producer_linger_ms: int = Field(20, ge=0, le=1000, description="Faust producer linger")
    producer_max_batch_size: int | None = Field(
        None, ge=1, description="bytes per producer record batch; unset = Faust's default"
    )
    consumer_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=10_000,
        description="how long a fetch waits for new records (ms): the floor of each hop's "
        "latency when input is sparse (Faust's own default is 1500)",
    )
    consumer_buffer_messages: int = Field(
        256,
        ge=8,
        le=100_000,
        description="messages a worker reads ahead of each step (Faust's "
        "stream_buffer_maxsize; past four fifths of it, fetching pauses): what bounds the "
        "input in its memory, ~60 MiB of the SDK's 500-event messages (Faust's default, "
        "4096, let a backlog take ~1 GiB)",
    )
    broker_end_offsets_exact: bool | None = Field(
        None,
        description="whether the broker's end offsets count every record; unset = detect "
        "(false on the bundled tansu broker: table recovery then reads them off the records)",
    )
    # Before webhook_url: its check reads this one.
    webhook_allow_http_loopback: bool = Field(
        False,
        description="allow an http:// webhook URL on a loopback host (127.0.0.0/8, ::1, "
        "localhost), for a local receiver or a sidecar; any other URL must be https://",
    )
    webhook_url: str | None = Field(
        None, description="POST every alert as JSON here (optional; https:// only)"
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="key of the Standard Webhooks signature (webhook-signature header): "
        "whsec_<base64> or any long random string; unset = unsigned, with a warning",
    )
    alerts_include_feedback_text: bool = Field(
        False,
        description="put the customer's verbatim feedback text into alert explanations "
        "(cx.alerts, the alerts table, webhooks); off = its topic and sentiment only",
    )
    model_path: Path | None = Field(
        None, description="experience model file (YAML); unset = the shipped default"
    )
    log_level: str = Field(
        "info", pattern=r"^(?i)(debug|info|warning|error)$", description="worker log level"
    )

    @model_validator(mode="before")
    @classmethod
    def _split_clickhouse_password(cls, data: Any) -> Any:
        """Take the password out of the URL the moment it is read: from here on the URL
        holds none (it is safe in any message, repr or dump), and the password is a
        ``SecretStr``. ``CXPULSE_CLICKHOUSE_PASSWORD`` wins over the URL's."""
        if not isinstance(data, dict):
            return data
        key = next((k for k in data if str(k).lower() == "clickhouse_url"), None)
        url = data.get(key) if key is not None else None
        if not isinstance(url, str):
            return data
        bare, password = split_password(url)
        if password is None:
            return data
        data = dict(data)
        data[key] = bare
        pkey = next((k for k in data if str(k).lower() == "clickhouse_password"), None)
        if pkey is None or data[pkey] is None:
            data["clickhouse_password"] = SecretStr(password)
        return data

    @field_validator("kafka_url")
    @classmethod
    def _kafka_bootstrap(cls, v: str) -> str:
        """Any accepted form becomes ``kafka://host:port[,host:port]``."""
        return "kafka://" + ",".join(format_address(a) for a in parse_bootstrap(v))

    @field_validator("kafka_security_protocol")
    @classmethod
    def _kafka_protocol(cls, v: str) -> str:
        value = v.strip().upper().replace("-", "_")
        if value not in SECURITY_PROTOCOLS:
            raise ValueError(f"give one of {', '.join(SECURITY_PROTOCOLS)}")
        return value

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _kafka_mechanism(cls, v: str) -> str:
        value = v.strip().upper().replace("_", "-")
        if value not in SASL_MECHANISMS:
            raise ValueError(f"give one of {', '.join(SASL_MECHANISMS)}")
        return value

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _kafka_empty_is_unset(cls, v: Any) -> Any:
        """``CXPULSE_KAFKA_SASL_USERNAME=`` (empty) is unset, as in a shell or compose."""
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _kafka_file(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        if not v.is_file():
            raise ValueError("no such file: give the path of a readable PEM file")
        return v

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> Settings:
        """Settings that the chosen protocol would silently ignore are refused, so a typo
        in the protocol does not turn TLS or the login off unnoticed."""
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        given_sasl = [
            name
            for name, value in (
                ("CXPULSE_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("CXPULSE_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
            )
            if value is not None
        ]
        if sasl and len(given_sasl) < 2:
            raise KafkaSecurityError(
                f"CXPULSE_KAFKA_SECURITY_PROTOCOL={protocol} logs in with SASL: set "
                "CXPULSE_KAFKA_SASL_USERNAME and CXPULSE_KAFKA_SASL_PASSWORD"
            )
        if given_sasl and not sasl:
            raise KafkaSecurityError(
                f"{' and '.join(given_sasl)} set but CXPULSE_KAFKA_SECURITY_PROTOCOL="
                f"{protocol} does not log in: set it to SASL_SSL (or SASL_PLAINTEXT), or "
                "unset them"
                if len(given_sasl) > 1
                else "unset it"
            )
        given_files = [
            "CXPULSE_" + name.upper()
            for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if given_files and not tls:
            raise KafkaSecurityError(
                f"{' and '.join(given_files)} set but CXPULSE_KAFKA_SECURITY_PROTOCOL="
                f"{protocol} does not use TLS: set it to SSL (or SASL_SSL), or unset them"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise KafkaSecurityError(
                "CXPULSE_KAFKA_SSL_KEYFILE is set without CXPULSE_KAFKA_SSL_CERTFILE: "
                "give the client certificate too (mTLS needs both)"
            )
        return self

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_scheme(cls, v: str) -> str:
        if not v.startswith(("clickhouse://", "chdb://")):
            raise ValueError("must be clickhouse://user:pass@host:9000/db or chdb:///path/to/dir")
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook_https(cls, v: str | None, info: ValidationInfo) -> str | None:
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme == "https" and parts.hostname:
            return v
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("give an https:// URL with a host, e.g. https://hooks.example.com/cx")
        if not is_loopback(parts.hostname):
            raise ValueError(
                "http:// would send alerts and their signatures in clear text: use https://"
            )
        if not info.data.get("webhook_allow_http_loopback"):
            raise ValueError(
                "http:// is refused; for a receiver on this host set "
                "CXPULSE_WEBHOOK_ALLOW_HTTP_LOOPBACK=true, otherwise use https://"
            )
        return v

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_form(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        value = v.get_secret_value()
        if value.startswith("whsec_"):
            import base64
            import binascii

            try:
                base64.b64decode(value.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                raise ValueError(
                    "starts with whsec_ but the rest is not base64: give whsec_<base64> "
                    "or a secret without the prefix"
                ) from None
        return v

    @field_validator("ingest_token", "api_token")
    @classmethod
    def _ingest_token_form(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        value = v.get_secret_value()
        if len(value) < 16 or any(c.isspace() for c in value):
            raise ValueError(
                "give at least 16 characters without spaces, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return v

    @property
    def clickhouse_display_url(self) -> str:
        """The ClickHouse URL for messages: ``user:***@`` when a password is set."""
        return with_password_mark(self.clickhouse_url, self.clickhouse_password is not None)

    @property
    def bootstrap_servers(self) -> list[str]:
        """The bootstrap servers as the host:port list kafka-python and aiokafka take."""
        return [format_address(a) for a in parse_bootstrap(self.kafka_url)]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a host that never leaves this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KafkaSecurityError(ValueError):
    """Kafka security settings that contradict each other (the message names them)."""


#: Settings whose value is never quoted in an error message.
_SECRET_FIELDS = {
    "clickhouse_password",
    "webhook_secret",
    "ingest_token",
    "api_token",
    "kafka_sasl_password",
}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not field:  # a check across settings: its message names them
            raise ConfigError(f"configuration error: {msg}") from None
        name = "CXPULSE_" + field.upper()
        raise ConfigError(
            f"configuration error: {name}={_shown(field, err.get('input'))}: {msg}"
        ) from None


def _shown(field: str, value: object) -> str:
    """A refused value as an error line may show it: never a secret, nor a URL's password
    (masked), nor a webhook URL's path and query (it often carries a token there)."""
    if field in _SECRET_FIELDS:
        return "'***'"
    if field == "webhook_url" and isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        rest = "/…" if parts.path.strip("/") or parts.query else ""
        return repr(f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{rest}")
    if isinstance(value, str):
        return repr(redact_url(value))
    return repr(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
