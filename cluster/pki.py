"""The cluster's certificate authority and its certificates, made on the controller.

One directory (``tenir_pki_dir``) holds ``ca.crt`` and ``ca.key`` (made once, never
overwritten) and, for each name, ``<name>.crt`` and ``<name>.key``: an ECDSA P-256 key and a
certificate signed by the CA, whose subject is ``CN=<name>`` and whose SANs are the host's
names and addresses. A certificate is made again (with a new key) when it is missing, when it
expires within ``renew_days``, when its SANs differ from those asked for, or when it was not
signed by the CA of the directory. Host certificates serve both ends of TLS (serverAuth and
clientAuth): etcd's peers and its JSON gateway present them as clients too.

A private key may be encrypted with ansible-vault on disk (production: the pki play encrypts
each new one): this module never reads a host's key, only its certificate; the CA's key is
read, and decrypted with the vault password file when it is encrypted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VAULT_HEADER = b"$ANSIBLE_VAULT;"
CA_DAYS = 3650
CERT_DAYS = 365
RENEW_DAYS = 30
GeneralName = x509.DNSName | x509.IPAddress


class PkiError(RuntimeError):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def general_names(sans: Sequence[str]) -> list[GeneralName]:
    """``10.0.0.1`` as an IP address SAN, anything else as a DNS name; sorted, no duplicates."""
    out: dict[str, GeneralName] = {}
    for san in sans:
        san = san.strip()
        if not san:
            continue
        try:
            out[f"ip:{ipaddress.ip_address(san)}"] = x509.IPAddress(ipaddress.ip_address(san))
        except ValueError:
            if any(c.isspace() or c in "/:@" for c in san):
                raise PkiError(f"{san!r} is neither an IP address nor a DNS name") from None
            out[f"dns:{san.lower()}"] = x509.DNSName(san.lower())
    return [out[k] for k in sorted(out)]


def san_strings(names: Sequence[GeneralName]) -> list[str]:
    """SANs as ``dns:name`` / ``ip:address``, sorted: one form to compare."""
    return sorted(f"ip:{n.value}" if isinstance(n, x509.IPAddress) else f"dns:{n.value}"
                  for n in names)


def cert_sans(cert: x509.Certificate) -> list[str]:
    """The certificate's SANs as ``dns:name`` / ``ip:address``, sorted."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san_strings([n for n in ext if isinstance(n, x509.DNSName | x509.IPAddress)])


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def read_vaulted(path: Path, vault_password_file: Path | None) -> bytes:
    """The file's bytes, decrypted when ansible-vault encrypted it."""
    data = path.read_bytes()
    if not data.startswith(VAULT_HEADER):
        return data
    if vault_password_file is None:
        raise PkiError(f"{path} is encrypted with ansible-vault: give --vault-password-file")
    from ansible.constants import DEFAULT_VAULT_ID_MATCH  # type: ignore[import-untyped]
    from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]

    secret = VaultSecret(vault_password_file.read_bytes().strip())
    return bytes(VaultLib([(DEFAULT_VAULT_ID_MATCH, secret)]).decrypt(data))


@dataclass(frozen=True)
class Outcome:
    name: str
    action: str  # made | renewed | unchanged
    why: str
    not_after: dt.datetime

    def line(self) -> str:
        when = self.not_after.strftime("%Y-%m-%d")
        return f"{self.action} {self.name}: {self.why} (valid until {when})"


class Pki:
    def __init__(self, directory: Path, vault_password_file: Path | None = None) -> None:
        self.dir = directory
        self.vault_password_file = vault_password_file

    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.dir / "ca.key"

    def cert_path(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key_path(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def ensure_ca(self, common_name: str, days: int = CA_DAYS) -> Outcome:
        """The CA, made if absent (both halves), else kept as it is."""
        if self.ca_cert_path.exists() or self.ca_key_path.exists():
            if not (self.ca_cert_path.exists() and self.ca_key_path.exists()):
                raise PkiError(f"{self.dir}: ca.crt and ca.key must both exist (one is missing;"
                               " restore it rather than make a new CA every host would refuse)")
            cert = self.ca_cert()
            return Outcome("ca", "unchanged", "exists", cert.not_valid_after_utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        _write(self.ca_key_path, _key_pem(key), 0o600)
        _write(self.ca_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return Outcome("ca", "made", f"new CA {common_name!r}", cert.not_valid_after_utc)

    def ca_cert(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise PkiError(f"{self.ca_cert_path}: not a readable certificate ({exc})") from exc

    def _ca_key(self) -> ec.EllipticCurvePrivateKey:
        try:
            raw = read_vaulted(self.ca_key_path, self.vault_password_file)
            key = serialization.load_pem_private_key(raw, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise PkiError(f"{self.ca_key_path}: not a readable private key ({exc})") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{self.ca_key_path}: an ECDSA key was expected")
        return key

    def why_renew(self, name: str, sans: Sequence[str], renew_days: int,
                  common_name: bool = True) -> str | None:
        """Why ``name``'s certificate must be made again, or None if it is good."""
        path = self.cert_path(name)
        if not path.exists() or not self.key_path(name).exists():
            return "no certificate yet" if not path.exists() else "its key is missing"
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError:
            return "the certificate cannot be read"
        ca = self.ca_cert()
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
            return "not signed by this CA"
        left = cert.not_valid_after_utc - _now()
        if left < dt.timedelta(days=renew_days):
            return f"expires in {max(0, left.days)} days (renewed {renew_days} days before)"
        has_cn = bool(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
        if has_cn != common_name:
            return "its subject must " + ("name it" if common_name else "carry no common name")
        wanted = san_strings(general_names(sans))
        if cert_sans(cert) != wanted:
            return f"SANs changed: {','.join(cert_sans(cert))} -> {','.join(wanted)}"
        return None

    def ensure_cert(self, name: str, sans: Sequence[str], *, days: int = CERT_DAYS,
                    renew_days: int = RENEW_DAYS, common_name: bool = True) -> Outcome:
        """Make or renew NAME.crt/NAME.key. Its subject is CN=NAME, or empty when
        ``common_name`` is false: etcd's JSON gateway refuses (HTTP 400) any client certificate
        carrying a common name once RBAC is on, so its clients (Patroni, ``tenir status``)
        present one without; identity there is a password login."""
        why = self.why_renew(name, sans, renew_days, common_name)
        if why is None:
            cert = x509.load_pem_x509_certificate(self.cert_path(name).read_bytes())
            return Outcome(name, "unchanged", "valid, SANs as asked", cert.not_valid_after_utc)
        action = "made" if why == "no certificate yet" else "renewed"
        ca, ca_key = self.ca_cert(), self._ca_key()
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_after = min(now + dt.timedelta(days=days), ca.not_valid_after_utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]
                                           if common_name else []))
                   .issuer_name(ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                key_agreement=True, key_cert_sign=False,
                                                crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        names = general_names(sans)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        # the key first: a certificate is never left beside a key that does not match it
        _write(self.key_path(name), _key_pem(key), 0o600)
        _write(self.cert_path(name), cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return Outcome(name, action, why, cert.not_valid_after_utc)

