"""A throwaway certificate authority for federation tests, and federating test servers.

Each test server gets a certificate for its host name from this CA, and trusts only
this CA (federation.ca_bundle): TLS verification stays on, as in production.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class TestCA:
    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, common_name: str = "Federation Test CA"):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.name = _name(common_name)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = directory / "ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, hostname: str) -> tuple[Path, Path]:
        """A server certificate for `hostname` (a DNS name or an IP): (cert path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
        except ValueError:
            san = x509.DNSName(hostname)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hostname))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.directory / f"{hostname}.crt"
        key_path = self.directory / f"{hostname}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return cert_path, key_path


def bound_loopback_socket(port: int = 0) -> socket.socket:
    """A listening-ready socket on a free loopback port, bound before the server starts so
    that the port can go into the server name (the spec's explicit-port rule); `port`
    rebinds a stopped server's port, to restart it under the same name."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


# Every test server host name resolves to loopback (federation.resolve_overrides).
TEST_HOSTS = {f"hs{i}.test.local": "127.0.0.1" for i in range(1, 5)}


# presence.mode for tests whose servers exchange presence (the default keeps it local).
FEDERATED_PRESENCE = {"presence": {"mode": "federated"}}


async def start_federating_server(
    make_server,
    ca: TestCA,
    host: str,
    allowed: list[str],
    *,
    port: int = 0,
    sock: socket.socket | None = None,
    dsn=None,
    app_services: list[str] | None = None,
    config: dict | None = None,
    **extra,
):
    """A test server named `host:PORT` with a TLS federation listener on 127.0.0.1:PORT,
    admitting the server names or wildcards in `allowed`. `port` and `dsn` restart a
    stopped server under its old name, on its old database; `sock` is a socket already
    bound to the port to serve on (no window in which another process can take it)."""
    if sock is None:
        sock = bound_loopback_socket(port)
    port = sock.getsockname()[1]
    cert, key = ca.issue(host)
    federation = {
        "listen": f"127.0.0.1:{port}",
        "tls_certificate": str(cert),
        "tls_private_key": str(key),
        "ca_bundle": str(ca.ca_path),
        "allowed_servers": allowed,
        "allow_private_addresses": True,
        "resolve_overrides": TEST_HOSTS,
        **extra,
    }
    more = {"app_services": app_services} if app_services else {}
    more.update(config or {})  # top-level sections, e.g. access_rules
    return await make_server(
        server_name=f"{host}:{port}",
        federation=federation,
        federation_socket=sock,
        dsn=dsn,
        **more,
    )
