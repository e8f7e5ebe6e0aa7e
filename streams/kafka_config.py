"""The Kafka connection settings as each client library takes them: one place, so the
worker (Faust on aiokafka), the publisher, the admin and every command connect alike.

- ``kafka_python_config``: kafka-python's ``KafkaProducer``/``KafkaConsumer``/
  ``KafkaAdminClient`` keyword arguments (bootstrap servers and security).
- ``aiokafka_config``: the same for aiokafka clients used directly.
- ``faust_broker`` and ``faust_credentials``: the Faust app's ``broker`` and
  ``broker_credentials`` (Faust hands these to aiokafka for its consumer and producer).

TLS goes through one ``ssl.SSLContext`` built from ``CXPULSE_KAFKA_SSL_*`` (the system's
trusted CAs unless a CA file is given; the broker's host name is checked), so every
client trusts and presents exactly the same certificates. The SASL password leaves its
``SecretStr`` only here, into the client configuration; it is never logged.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import faust

    from cxpulse.streams.settings import Settings


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKey


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every Kafka client (None without TLS); a CA, certificate or key
    file that cannot be used is a one-line ``ConfigError`` naming its setting."""
    from cxpulse.streams.settings import ConfigError

    if not uses_tls(settings):
        return None
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"CXPULSE_KAFKA_SSL_CAFILE={cafile}: not a usable CA file ({_ssl_reason(exc)}): "
            "give a PEM file of the CA certificate(s) that signed the brokers' certificates"
        ) from None
    certfile, keyfile = settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
    if certfile is not None:
        try:
            context.load_cert_chain(
                str(certfile), str(keyfile) if keyfile else None, password=_no_password
            )
        except _EncryptedKey:
            raise ConfigError(
                f"CXPULSE_KAFKA_SSL_KEYFILE={keyfile or certfile}: the private key is "
                "encrypted: give it unencrypted (e.g. openssl pkey -in key.pem -out "
                "plain.pem), readable by this user only"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"CXPULSE_KAFKA_SSL_CERTFILE={certfile} / CXPULSE_KAFKA_SSL_KEYFILE="
                f"{keyfile or '(unset)'}: not a usable client certificate and key "
                f"({_ssl_reason(exc)}): give PEM files of a certificate and its own key"
            ) from None
    return context


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(exc).__name__


def _sasl(settings: Settings) -> dict[str, Any]:
    password = settings.kafka_sasl_password
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": password.get_secret_value() if password else None,
    }


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of every kafka-python client: bootstrap servers and security."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        config["ssl_context"] = context
    if uses_sasl(settings):
        config.update(_sasl(settings))
    return config


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of an aiokafka client: aiokafka names these settings as
    kafka-python does."""
    return kafka_python_config(settings)


def faust_broker(settings: Settings) -> list[str]:
    """The Faust app's ``broker``: one ``kafka://host:port`` URL per bootstrap server."""
    return [f"kafka://{address}" for address in settings.bootstrap_servers]


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The Faust app's ``broker_credentials`` (None for PLAINTEXT)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    sasl = _sasl(settings)
    return faust.SASLCredentials(
        username=sasl["sasl_plain_username"],
        password=sasl["sasl_plain_password"],
        mechanism=sasl["sasl_mechanism"],
        ssl_context=context,  # SASL_SSL with it, SASL_PLAINTEXT without
    )


def describe(settings: Settings) -> str:
    """How cxpulse connects, for messages: ``SASL_SSL (SCRAM-SHA-512 as alice)``."""
    protocol = settings.kafka_security_protocol
    if uses_sasl(settings):
        return f"{protocol} ({settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username})"
    if uses_tls(settings) and settings.kafka_ssl_certfile is not None:
        return f"{protocol} (with a client certificate)"
    return protocol


#: The Kafka security settings, for a child process's environment.
SECURITY_FIELDS = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
)

#: Overrides that connect in the clear whatever the environment says: for the bundled
#: broker (``cxpulse demo``), which listens on loopback without TLS or SASL.
PLAINTEXT: dict[str, Any] = {name: None for name in SECURITY_FIELDS} | {
    "kafka_security_protocol": "PLAINTEXT",
    "kafka_sasl_mechanism": "PLAIN",
}


def kafka_env(settings: Settings) -> dict[str, str | None]:
    """``CXPULSE_KAFKA_*`` variables that give a child process these Kafka settings
    (None: the variable must be unset). Holds the SASL password: for a child's
    environment only, never to print."""
    env: dict[str, str | None] = {"CXPULSE_KAFKA_URL": settings.kafka_url}
    for name in SECURITY_FIELDS:
        value = getattr(settings, name)
        if value is not None and hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env["CXPULSE_" + name.upper()] = None if value is None else str(value)
    return env
