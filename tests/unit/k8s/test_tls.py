"""Serving certificates: SANs of the generated one; files reloaded only when they change."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509

from extproc.errors import ConfigError
from extproc.tls import CertificateFiles, self_signed_certificate, service_hosts


def test_generated_certificate_names_the_service_and_loopback() -> None:
    cert_pem, key_pem = self_signed_certificate(service_hosts("inference"))
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "inference-gateway-ext-proc",
        "inference-gateway-ext-proc.inference",
        "inference-gateway-ext-proc.inference.svc",
        "inference-gateway-ext-proc.inference.svc.cluster.local",
        "localhost",
    ]
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert b"PRIVATE KEY" in key_pem


def test_certificate_files_reload_on_change(tmp_path: Path) -> None:
    for name, (cert, key) in {"a": self_signed_certificate(["a"])}.items():
        (tmp_path / "tls.crt").write_bytes(cert)
        (tmp_path / "tls.key").write_bytes(key)
        del name
    files = CertificateFiles(tmp_path)
    files.load()
    assert files.fetch() is None  # unchanged: keep the current pair
    cert, key = self_signed_certificate(["b"])
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    later = os.stat(tmp_path / "tls.crt").st_mtime + 5
    os.utime(tmp_path / "tls.crt", (later, later))
    assert files.fetch() is not None
    assert files.loads == 2
    (tmp_path / "tls.key").unlink()  # mid-rotation: keep serving the old pair
    assert files.fetch() is None


def test_missing_files_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--cert-path: cannot read .*tls\.crt"):
        CertificateFiles(tmp_path).load()
