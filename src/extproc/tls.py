"""Serving certificates for the ext_proc port: generated self-signed, or files reloaded on change.

`--secure-serving` without `--cert-path` generates, in memory, an ECDSA P-256 certificate valid
for the picker Service's DNS names, ``localhost`` and 127.0.0.1 (as the reference EPP serves
TLS with a self-signed certificate; clients either skip verification or pin this certificate).
With `--cert-path DIR`, ``DIR/tls.crt`` and ``DIR/tls.key`` are served and re-read when their
modification times change (a renewed Secret mounted by cert-manager): on the built-in HTTP/2
server by reloading its `ssl.SSLContext` (checked every second; new handshakes get the new
pair), on grpcio through its dynamic server credentials, whose fetcher runs before each
handshake.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from extproc.errors import ConfigError
from extproc.logs import get_logger

log = get_logger(__name__)

SERVICE_NAME = "inference-gateway-ext-proc"
CERT_FILE, KEY_FILE = "tls.crt", "tls.key"
VALIDITY = datetime.timedelta(days=365)
RELOAD_CHECK_SECONDS = 1.0


def service_hosts(namespace: str = "default", service: str = SERVICE_NAME) -> tuple[str, ...]:
    """The names the picker is reached by: the Service's DNS names and loopback."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "::1",
    )


def self_signed_certificate(hosts: Sequence[str]) -> tuple[bytes, bytes]:
    """A new key and a self-signed certificate for `hosts` (DNS names or IPs), PEM encoded."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class CertificateFiles:
    """``tls.crt``/``tls.key`` in a directory; `fetch()` returns a new config when they change."""

    def __init__(self, directory: Path) -> None:
        self.cert = directory / CERT_FILE
        self.key = directory / KEY_FILE
        self._stamp: tuple[float, float] | None = None
        self.loads = 0

    def _mtimes(self) -> tuple[float, float]:
        return (self.cert.stat().st_mtime, self.key.stat().st_mtime)

    def load(self) -> grpc.ServerCertificateConfiguration:
        """Read both files now (ConfigError when they are missing or unreadable)."""
        try:
            stamp = self._mtimes()
            pair = (self.key.read_bytes(), self.cert.read_bytes())
        except OSError as exc:
            raise ConfigError(f"--cert-path: cannot read {exc.filename}: {exc.strerror}") from exc
        if not pair[0].strip() or not pair[1].strip():
            raise ConfigError(f"--cert-path: {self.cert} or {self.key} is empty")
        self._stamp = stamp
        self.loads += 1
        return grpc.ssl_server_certificate_configuration([pair])

    def load_into(self, context: ssl.SSLContext) -> None:
        """Load both files into `context` (ConfigError when missing, unreadable or invalid)."""
        try:
            stamp = self._mtimes()
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:  # an OSError too: first
            raise ConfigError(f"--cert-path: {self.cert} / {self.key}: {exc.reason}") from exc
        except OSError as exc:
            raise ConfigError(f"--cert-path: cannot read {exc.filename}: {exc.strerror}") from exc
        self._stamp = stamp
        self.loads += 1

    def refresh(self, context: ssl.SSLContext) -> bool:
        """Reload into `context` if the files changed; a broken pair keeps the current one."""
        try:
            if self._mtimes() == self._stamp:
                return False
            self.load_into(context)
        except (OSError, ConfigError) as exc:
            log.warning("certificate_reload_failed", path=str(self.cert.parent), error=str(exc))
            return False
        log.info("certificate_reloaded", path=str(self.cert.parent))
        return True

    async def watch(self, context: ssl.SSLContext, interval: float = RELOAD_CHECK_SECONDS) -> None:
        """Keep `context` in step with the files until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.refresh(context)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Fetcher for grpc's dynamic credentials: None keeps the current certificate."""
        try:
            if self._mtimes() == self._stamp:
                return None
            config = self.load()
        except (OSError, ConfigError) as exc:  # mid-rotation: keep serving the old pair
            log.warning("certificate_reload_failed", path=str(self.cert.parent), error=str(exc))
            return None
        log.info("certificate_reloaded", path=str(self.cert.parent))
        return config


def server_credentials(
    cert_path: Path | None, hosts: Sequence[str] = service_hosts()
) -> grpc.ServerCredentials:
    """Credentials for `add_secure_port`: files from `cert_path`, else a generated certificate."""
    if cert_path is None:
        cert_pem, key_pem = self_signed_certificate(hosts)
        log.info("certificate_generated", hosts=",".join(hosts))
        return grpc.ssl_server_credentials([(key_pem, cert_pem)])
    files = CertificateFiles(cert_path)
    # The stub says the fetcher must return a configuration; grpc documents None as no change.
    return grpc.dynamic_ssl_server_credentials(files.load(), files.fetch)  # type: ignore[arg-type]


def server_ssl_context(
    cert_path: Path | None, hosts: Sequence[str] = service_hosts()
) -> tuple[ssl.SSLContext, CertificateFiles | None]:
    """TLS for the built-in HTTP/2 server (ALPN h2), and the files to watch, if any."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if cert_path is not None:
        files = CertificateFiles(cert_path)
        files.load_into(context)
        return context, files
    cert_pem, key_pem = self_signed_certificate(hosts)
    log.info("certificate_generated", hosts=",".join(hosts))
    # `load_cert_chain` reads files only: the generated pair lives on disk for one call, in a
    # directory only this user can read.
    with tempfile.TemporaryDirectory(prefix="extproc-tls-") as directory:
        cert, key = Path(directory, CERT_FILE), Path(directory, KEY_FILE)
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        os.chmod(key, 0o600)
        context.load_cert_chain(cert, key)
    return context, None
