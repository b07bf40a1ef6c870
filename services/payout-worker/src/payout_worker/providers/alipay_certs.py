"""Alipay's public-key certificate mode (公钥证书模式), which fund transfers require.

Every request carries `app_cert_sn` (the app's certificate) and `alipay_root_cert_sn` (Alipay's root
bundle); answers are verified with the public key of Alipay's certificate, and name it in `alipay_cert_sn`.
A serial is computed as Alipay's SDKs compute it (AntCertificationUtil.getCertSN in alipay-sdk-java-all):
the MD5, in hex, of the issuer's distinguished name as Java's `X500Principal.getName()` renders it
(RFC 2253: the RDNs in reverse order, `CN=...,OU=...,O=...,C=...`) followed by the serial number in
decimal. The root's is the serials of the bundle's certificates signed with RSA (a signature algorithm
under PKCS #1, 1.2.840.113549.1.1) joined with `_`.

The issuer and serial are read from the DER here rather than through `cryptography`: Alipay's root bundle
holds certificates (an SM2 root, an ECDSA root with NULL parameters) that `cryptography` refuses to load,
and only their signature algorithm is needed to skip them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_SIGNATURES = "1.2.840.113549.1.1"  # the SDKs' test: md5/sha1/sha256...WithRSAEncryption
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
# The attribute types RFC 2253 (and Java) write by name; any other is written as its OID and #hex DER.
_KEYWORDS = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
# DER string types Java renders as text in RFC 2253 (the rest as #hex): UTF8String, PrintableString,
# T61String, IA5String, GeneralString, BMPString. Java reads every one's bytes as UTF-8 (a BMPString too).
_STRINGS = frozenset({0x0C, 0x13, 0x14, 0x16, 0x1B, 0x1E})
_ESCAPED = ',=+<>#;"\\'


# ---------------------------------------------------------------- DER, as far as serials need it


@dataclass(frozen=True)
class _Node:
    tag: int
    data: bytes  # the whole element, tag and length included
    start: int  # where the content starts within data

    @property
    def content(self) -> bytes:
        return self.data[self.start :]


def _read(data: bytes, at: int = 0) -> tuple[_Node, int]:
    """The element at `at` and where the next one starts."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, head = data[at], data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or head + count > len(data):
            raise ValueError("bad DER length")
        length, head = int.from_bytes(data[head : head + count], "big"), head + count
    end = head + length
    if end > len(data):
        raise ValueError("truncated DER")
    return _Node(tag, data[at:end], head - at), end


def _children(node: _Node) -> list[_Node]:
    out, content, at = [], node.content, 0
    while at < len(content):
        child, at = _read(content, at)
        out.append(child)
    return out


def _oid(content: bytes) -> str:
    parts, value = [], 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = min(parts[0] // 40, 2)
    return ".".join(str(p) for p in [first, parts[0] - 40 * first, *parts[1:]])


def _escape(value: str) -> str:
    """Java's AVA.toRFC2253String for a text value."""
    out = "".join(
        "\\" + c if c in _ESCAPED else "\\00" if c == "\0" else c for c in value
    )  # anything else, printable or not, is written as is
    lead = len(out) - len(out.lstrip(" \r"))
    trail = len(out.rstrip(" \r"))
    return "".join("\\" + c if i < lead or i >= trail else c for i, c in enumerate(out))


def _rdn_string(name: _Node) -> str:
    """A Name as Java's X500Principal.getName() (RFC 2253) writes it."""
    rdns = []
    for rdn in _children(name):  # SET OF AttributeTypeAndValue
        values = []
        for ava in _children(rdn):
            kind, value = _children(ava)
            oid = _oid(kind.content)
            keyword = _KEYWORDS.get(oid)
            if keyword is None or value.tag not in _STRINGS:
                values.append(f"{keyword or oid}=#{value.data.hex()}")
            else:
                values.append(f"{keyword}={_escape(value.content.decode('utf-8', 'replace'))}")
        rdns.append("+".join(values))
    return ",".join(reversed(rdns))


@dataclass(frozen=True)
class CertFacts:
    """What a serial needs of one certificate."""

    der: bytes
    issuer: str  # RFC 2253, as Java renders it
    serial_number: int
    signature_algorithm: str  # dotted OID

    @property
    def sn(self) -> str:
        return hashlib.md5((self.issuer + str(self.serial_number)).encode()).hexdigest()


def cert_facts(der: bytes) -> CertFacts:
    certificate, _ = _read(der)
    tbs, algorithm, _signature = _children(certificate)
    fields = _children(tbs)
    if fields[0].tag == 0xA0:  # [0] version
        fields = fields[1:]
    serial, _inner_algorithm, issuer = fields[0], fields[1], fields[2]
    return CertFacts(
        der=der,
        issuer=_rdn_string(issuer),
        serial_number=int.from_bytes(serial.content, "big", signed=True),
        signature_algorithm=_oid(_children(algorithm)[0].content),
    )


def read_pem_chain(pem: str | bytes) -> list[CertFacts]:
    """Every certificate of a PEM file, in order."""
    raw = pem.encode() if isinstance(pem, str) else pem
    blocks = [base64.b64decode(b"".join(m.group(1).split())) for m in _PEM.finditer(raw)]
    if not blocks:
        raise ValueError("no PEM certificate found")
    try:
        return [cert_facts(der) for der in blocks]
    except (ValueError, IndexError):
        raise ValueError("a certificate is not valid DER") from None


def cert_sn(pem: str | bytes) -> str:
    """app_cert_sn (or Alipay's certificate's): the serial of the file's first certificate."""
    return read_pem_chain(pem)[0].sn


def root_cert_sn(pem: str | bytes) -> str:
    """alipay_root_cert_sn: the serials of the RSA-signed certificates of the root bundle, joined by `_`."""
    sns = [c.sn for c in read_pem_chain(pem) if c.signature_algorithm.startswith(RSA_SIGNATURES)]
    if not sns:
        raise ValueError("the Alipay root certificate holds no RSA-signed certificate")
    return "_".join(sns)


# ---------------------------------------------------------------- the three files, checked


def read_setting(value: str) -> str:
    """A certificate setting: the PEM itself, or the path of its file."""
    return value if "-----BEGIN" in value else Path(value).read_text(encoding="utf-8")


def _loaded(facts: CertFacts, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(facts.der)
    except ValueError:
        raise ValueError(f"{what}: a certificate that cannot be read") from None


def _check_valid(cert: x509.Certificate, what: str, now: datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        valid = f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
        raise ValueError(f"{what} is valid from {valid}, not now")


def _issued_by(cert: x509.Certificate, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    for issuer in candidates:
        try:
            cert.verify_directly_issued_by(issuer)
            return issuer
        except (ValueError, TypeError, InvalidSignature):
            continue
    return None


def _chains_to_root(
    cert: x509.Certificate, intermediates: list[x509.Certificate], roots: list[x509.Certificate]
) -> bool:
    seen = 0
    while seen <= len(intermediates):
        if _issued_by(cert, roots) is not None:
            return True
        issuer = _issued_by(cert, intermediates)
        if issuer is None or issuer == cert:
            return False
        cert, seen = issuer, seen + 1
    return False


@dataclass(frozen=True)
class AlipayCertificates:
    app_cert_sn: str
    alipay_root_cert_sn: str
    alipay_cert_sn: str  # the certificate Alipay signs answers with, as answers name it
    alipay_public_key: rsa.RSAPublicKey


def load_certificates(
    *, app_cert: str, alipay_cert: str, root_cert: str, app_public_key: rsa.RSAPublicKey, now: datetime
) -> AlipayCertificates:
    """The serials and Alipay's key from the three PEMs, after the checks that would otherwise show only
    as refused calls: the app certificate is the app key's, and Alipay's chains to the root bundle."""
    app_chain, alipay_chain, roots = (
        read_pem_chain(app_cert),
        read_pem_chain(alipay_cert),
        read_pem_chain(root_cert),
    )
    app = _loaded(app_chain[0], "the app certificate")
    _check_valid(app, "the app certificate", now)
    if app.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != app_public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError("the app certificate is not for PAYOUT_WORKER_ALIPAY_PRIVATE_KEY")
    alipay = _loaded(alipay_chain[0], "Alipay's certificate")
    _check_valid(alipay, "Alipay's certificate", now)
    key = alipay.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("Alipay's certificate must hold an RSA key (RSA2)")
    loadable = []
    for facts in roots:
        try:
            loadable.append(x509.load_der_x509_certificate(facts.der))
        except ValueError:
            continue  # a root `cryptography` cannot read (SM2, for one) cannot be Alipay's RSA issuer
    intermediates = [_loaded(f, "Alipay's certificate chain") for f in alipay_chain[1:]]
    if not _chains_to_root(alipay, intermediates, loadable):
        raise ValueError("Alipay's certificate does not chain to the Alipay root certificate")
    return AlipayCertificates(
        app_cert_sn=app_chain[0].sn,
        alipay_root_cert_sn=root_cert_sn(root_cert),
        alipay_cert_sn=alipay_chain[0].sn,
        alipay_public_key=key,
    )
