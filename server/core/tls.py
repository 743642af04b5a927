"""HTTPS for the signaller: an ``ssl.SSLContext`` from PEM files, or from a self-signed certificate.

Cameras need a secure context, so a phone on the LAN can open an invite link only over HTTPS. A
self-signed certificate is made with ``cryptography`` for this machine's names and addresses (the
bind address, the host name, its LAN address, localhost, 127.0.0.1, ::1). Its private key lives in
a private temporary folder (mode 0700, the key file 0600) only as long as ``ssl`` needs to load it,
then it is deleted; the certificate stays there so clients can trust it. Browsers warn about a
self-signed certificate: compare the SHA-256 fingerprint they show with the one printed at start.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .settings import TLS


@dataclass(frozen=True)
class Served:
    """What TLS the signaller serves: the context, the certificate file and its fingerprint."""

    context: ssl.SSLContext
    certfile: Path
    #: SHA-256 of the certificate (DER), as browsers show it: ``AB:CD:...``.
    fingerprint: str
    #: The temporary folder of a self-signed certificate (removed by :meth:`cleanup`), or None.
    folder: Path | None = None

    def cleanup(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def fingerprint_of(certfile: str | Path) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as ``AB:CD:...``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(Path(certfile).read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def serve_tls(tls: TLS, host: str) -> Served | None:
    """The TLS to serve for ``Settings.tls`` (None: plain HTTP)."""
    if tls is None:
        return None
    if tls == "self-signed":
        return _self_signed(host)
    certfile, keyfile = tls
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return Served(context, Path(certfile), fingerprint_of(certfile))


def host_names(host: str) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses a certificate for a signaller bound to ``host`` should cover."""
    names = ["localhost"]
    addresses = ["127.0.0.1", "::1"]

    def add(value: str) -> None:
        value = value.strip("[]")
        if not value:
            return
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            if value not in names:
                names.append(value)
            return
        if not ip.is_unspecified and str(ip) not in addresses:
            addresses.append(str(ip))

    add(host)
    with contextlib.suppress(OSError):
        add(socket.gethostname())
        add(socket.getfqdn())
    if host in ("", "0.0.0.0", "::"):
        add(lan_address() or "")
    return names, addresses


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only, nothing is sent
        return str(probe.getsockname()[0])
    return None


def _self_signed(host: str) -> Served:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names, addresses = host_names(host)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ipymeet {names[-1]}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in addresses
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        # Its own CA, so a client may trust it as is (cafile=certfile) instead of skipping checks.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="ipymeet-tls-"))  # mode 0700
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
    finally:
        keyfile.unlink(missing_ok=True)  # the key now lives only in the SSLContext
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    return Served(context, certfile, fingerprint, folder)
