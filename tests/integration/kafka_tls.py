"""TLS for the Kafka security tests: certificates made with the ``openssl`` command, and a
TLS-terminating proxy in front of the bundled broker.

Why a proxy: the bundled tansu (0.6.0) cannot serve TLS. Its ``--cert`` and ``--key``
options are in one clap argument group, so giving both is refused ("the argument
'--cert <CERT>' cannot be used with '--key <KEY>'"), and the TLS acceptor it builds is
never applied to a connection (``let _acceptor = ...`` in tansu-broker's ``broker.rs``).
So the broker listens in the clear on 127.0.0.1 and advertises 127.0.0.2, where this
proxy (the standard library's TLS, requiring a client certificate signed by the test
CA: mTLS) forwards every byte to it, as a TLS-terminating load balancer or stunnel does.
The clients' side of TLS is real: CA verification, host name check, client certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.integration.conftest import require_tool

#: The address the proxy listens on and the broker advertises (loopback, not 127.0.0.1).
PROXY_HOST = "127.0.0.2"


def require_openssl() -> str:
    """The openssl command: skipped locally, a failure in CI (.ci/install-tools.sh)."""
    found = shutil.which("openssl")
    require_tool(
        found, "the openssl command is missing: apt-get install openssl (.ci/install-tools.sh)"
    )
    assert found is not None
    return found


@dataclass(frozen=True)
class Certs:
    ca: Path  # the test CA's certificate
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([require_openssl(), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _run(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", key.name, "-out", cert.name, "-subj", f"/CN=cxpulse test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _signed(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> None:
    _run(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", ca[0].name, "-CAkey", ca[1].name,
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for ``PROXY_HOST`` and a client certificate it signed,
    and another CA (for the untrusted case)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "ca")
    other = _ca(directory, "other-ca")
    _signed(
        directory,
        "server",
        ca,
        f"subjectAltName=IP:{PROXY_HOST},DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    _signed(directory, "client", ca, "extendedKeyUsage=clientAuth\n")
    return Certs(
        ca=ca[0],
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=other[0],
    )


class TLSProxy:
    """Accepts TLS on (``host``, ``port``) and forwards the plain bytes to ``upstream``;
    with ``client_ca`` a client certificate it signed is required (mTLS)."""

    def __init__(
        self, host: str, port: int, upstream: tuple[str, int], certs: Certs, *, mtls: bool = True
    ) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.server_cert, certs.server_key)
        if mtls:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(certs.ca)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    def start(self) -> TLSProxy:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        self.server = future.result(10)
        return self

    async def _serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, self.host, self.port, ssl=self.context)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
