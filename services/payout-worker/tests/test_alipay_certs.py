"""Alipay's public-key certificate mode (公钥证书, issue 11 item 3), against a CA chain made here: an RSA root
whose intermediate issues the app's and Alipay's certificates, and a root bundle that also holds a second
RSA root, an ECDSA root, and a root `cryptography` cannot read (ECDSA with NULL parameters, as in Alipay's
real bundle); the root serial skips the last two. Serials are checked against the SDKs' formula written
out by hand, and against the JDK running the official SDK's algorithm (AntCertificationUtil.getCertSN)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.clock import FrozenClock
from aftersales_testing import infra_missing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from payout_testing import NOW, TRUSTED, approved, running_worker
from payout_worker.config import Settings
from payout_worker.providers import Outcome
from payout_worker.providers.alipay import TRANSFER, AlipayProvider
from payout_worker.providers.alipay_certs import cert_facts, cert_sn, read_pem_chain, root_cert_sn
from test_alipay import (  # the fake gateway: it checks the app's signature and signs as Alipay
    ALIPAY_KEY,
    APP_KEY,
    APP_PRIVATE,
    FakeAlipay,
    new_key,
    running_gateway,
    transfer,
)

APP_ID = "2021000000000001"
VALID = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC))
ECDSA_SHA384 = bytes.fromhex("2a8648ce3d040303")  # 1.2.840.10045.4.3.3, DER content


# ---------------------------------------------------------------- a CA chain


def ca_name(cn: str) -> x509.Name:
    """As Ant Financial's CAs name themselves: C, O, OU, CN (Java writes the RDNs back to front)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def sdk_sn(issuer_cn: str, serial: int) -> str:
    """A serial as Alipay's SDKs spell it out: MD5 of the issuer DN (CN first) then the decimal serial."""
    return hashlib.md5(
        f"CN={issuer_cn},OU=Certification Authority,O=Ant Financial,C=CN{serial}".encode()
    ).hexdigest()


def issue(
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    issuer_key: Any,
    serial: int,
    *,
    algorithm: hashes.HashAlgorithm | None = None,
    valid: tuple[datetime, datetime] = VALID,
    ca: bool = False,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, algorithm or hashes.SHA256())
    )


def as_pem(*certs: x509.Certificate | bytes) -> str:
    """Certificates (or their DER) as one PEM file, a blank line between them, as Alipay ships its root."""
    blocks = []
    for cert in certs:
        der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
        body = base64.b64encode(der).decode()
        lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        blocks.append(f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n")
    return "\n".join(blocks)


Node = tuple[int, "bytes | list[Node]"]


def der_decode(der: bytes) -> Node:
    tag, length, head = der[0], der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, head = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    content = der[head : head + length]
    if not tag & 0x20:  # primitive
        return tag, content
    children, at = [], 0
    while at < len(content):
        child = der_decode(content[at:])
        children.append(child)
        at += len(der_encode(child))
    return tag, children


def der_encode(node: Node) -> bytes:
    tag, body = node
    content = body if isinstance(body, bytes) else b"".join(der_encode(c) for c in body)
    n = len(content)
    size = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | (n.bit_length() + 7) // 8]) + n.to_bytes((n.bit_length() + 7) // 8)
    )
    return bytes([tag]) + size + content


def with_null_parameters(node: Node) -> Node:
    """Every ecdsa-with-SHA384 algorithm identifier given NULL parameters, as Alipay's "Ant Financial
    Certification Authority E1" root has them: valid DER that `cryptography` refuses to load."""
    tag, body = node
    if isinstance(body, bytes):
        return node
    if tag == 0x30 and body == [(0x06, ECDSA_SHA384)]:
        return tag, [(0x06, ECDSA_SHA384), (0x05, b"")]
    return tag, [with_null_parameters(c) for c in body]


@dataclass
class Chain:
    root_key: rsa.RSAPrivateKey
    root: x509.Certificate  # "Test Root R1", sha256WithRSA
    legacy_root: x509.Certificate  # a second RSA root, sha512WithRSA
    ec_root: x509.Certificate  # ecdsa-with-SHA384: not in the root serial
    unreadable_root: bytes  # DER `cryptography` refuses: not in the root serial either
    intermediate_key: rsa.RSAPrivateKey
    intermediate: x509.Certificate  # "Test Class 2 R1", issued by the root
    app: x509.Certificate  # the app's key, issued by the intermediate
    alipay: x509.Certificate  # Alipay's key, issued by the intermediate

    @property
    def app_pem(self) -> str:
        return as_pem(self.app)

    @property
    def alipay_pem(self) -> str:  # alipayCertPublicKey_RSA2.crt: the certificate, then its issuer
        return as_pem(self.alipay, self.intermediate)

    @property
    def root_pem(self) -> str:  # alipayRootCert.crt
        return as_pem(self.unreadable_root, self.root, self.ec_root, self.legacy_root)


def make_chain() -> Chain:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = issue(
        ca_name("Test Root R1"), root_key.public_key(), ca_name("Test Root R1"), root_key, 2**63 + 17, ca=True
    )
    legacy_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    legacy = ca_name("Test Legacy Root G3")
    legacy_root = issue(
        legacy,
        legacy_key.public_key(),
        legacy,
        legacy_key,
        95790491425698859646,
        algorithm=hashes.SHA512(),
        ca=True,
    )
    ec_key = ec.generate_private_key(ec.SECP384R1())
    e1 = ca_name("Test Root E1")
    ec_root = issue(
        e1, ec_key.public_key(), e1, ec_key, 4719484692854726474, algorithm=hashes.SHA384(), ca=True
    )
    odd = ca_name("Test Root E2")
    odd_root = issue(odd, ec_key.public_key(), odd, ec_key, 77, algorithm=hashes.SHA384(), ca=True)
    unreadable = der_encode(
        with_null_parameters(der_decode(odd_root.public_bytes(serialization.Encoding.DER)))
    )
    intermediate_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    class2 = ca_name("Test Class 2 R1")
    intermediate = issue(
        class2, intermediate_key.public_key(), root.subject, root_key, 0x1FCFA18D6A480D11, ca=True
    )
    app_subject = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), x509.NameAttribute(NameOID.COMMON_NAME, APP_ID)]
    )
    app = issue(
        app_subject, APP_KEY.public_key(), class2, intermediate_key, 0x20250312642E190A03D066F71F3BA5E6
    )
    alipay_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.COMMON_NAME, "支付宝(中国)网络技术有限公司-2088"),
        ]
    )
    alipay = issue(
        alipay_subject, ALIPAY_KEY.public_key(), class2, intermediate_key, 0x202503128346922C845AD500A5B420D2C
    )
    return Chain(
        root_key, root, legacy_root, ec_root, unreadable, intermediate_key, intermediate, app, alipay
    )


CHAIN = make_chain()


def cert_provider(fake: FakeAlipay, chain: Chain = CHAIN, **changes: Any) -> AlipayProvider:
    files = {"app": chain.app_pem, "alipay": chain.alipay_pem, "root": chain.root_pem, **changes}
    return AlipayProvider(
        gateway=fake.url,
        app_id=APP_ID,
        private_key_pem=APP_PRIVATE,
        alipay_public_key_pem=None,
        clock=FrozenClock(NOW),
        timeout=1.0,
        qps=100,
        certificates=(files["app"], files["alipay"], files["root"]),
    )


def in_cert_mode(fake: FakeAlipay) -> None:
    """The gateway as Alipay runs it for a certificate-mode app: it requires both serials."""
    fake.cert_sns = (
        sdk_sn("Test Class 2 R1", CHAIN.app.serial_number),
        sdk_sn("Test Root R1", CHAIN.root.serial_number)
        + "_"
        + sdk_sn("Test Legacy Root G3", CHAIN.legacy_root.serial_number),
    )
    fake.alipay_cert_sn = sdk_sn("Test Class 2 R1", CHAIN.alipay.serial_number)


# ---------------------------------------------------------------- the serials


class TestSerialNumbers:
    def test_the_unreadable_root_is_unreadable(self) -> None:
        """The fixture does what it says: `cryptography` refuses it, as it refuses Alipay's E1 root."""
        with pytest.raises(ValueError):
            x509.load_der_x509_certificate(CHAIN.unreadable_root)

    def test_app_cert_sn_is_the_md5_of_the_issuer_dn_and_the_serial(self) -> None:
        assert cert_sn(CHAIN.app_pem) == sdk_sn("Test Class 2 R1", CHAIN.app.serial_number)
        assert cert_facts(CHAIN.app.public_bytes(serialization.Encoding.DER)).issuer == (
            "CN=Test Class 2 R1,OU=Certification Authority,O=Ant Financial,C=CN"
        )

    def test_alipay_root_cert_sn_joins_the_rsa_signed_roots_and_skips_the_rest(self) -> None:
        assert root_cert_sn(CHAIN.root_pem) == (
            sdk_sn("Test Root R1", CHAIN.root.serial_number)
            + "_"
            + sdk_sn("Test Legacy Root G3", CHAIN.legacy_root.serial_number)
        )
        algorithms = [c.signature_algorithm for c in read_pem_chain(CHAIN.root_pem)]
        assert algorithms == [
            "1.2.840.10045.4.3.3",  # unreadable E2: skipped
            "1.2.840.113549.1.1.11",  # sha256WithRSAEncryption
            "1.2.840.10045.4.3.3",  # E1: skipped
            "1.2.840.113549.1.1.13",  # sha512WithRSAEncryption
        ]

    def test_a_root_without_an_rsa_certificate_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no RSA-signed"):
            root_cert_sn(as_pem(CHAIN.ec_root, CHAIN.unreadable_root))

    @pytest.mark.parametrize(
        ("attributes", "rendered"),
        [
            (  # RFC 2253 escapes, and leading and trailing spaces
                [
                    (NameOID.COUNTRY_NAME, "CN"),
                    (NameOID.ORGANIZATION_NAME, 'A, B + "C" <d>; e=f #g \\h'),
                    (NameOID.COMMON_NAME, " #x  "),
                ],
                'CN=\\ \\#x\\ \\ ,O=A\\, B \\+ \\"C\\" \\<d\\>\\; e\\=f \\#g \\\\h,C=CN',
            ),
            (  # UTF-8 as is; a type without an RFC 2253 name as its OID and the hex of its DER
                [(NameOID.ORGANIZATION_NAME, "蚂蚁金服"), (NameOID.EMAIL_ADDRESS, "ca@example.com")],
                "1.2.840.113549.1.9.1=#160e6361406578616d706c652e636f6d,O=蚂蚁金服",
            ),
        ],
    )
    def test_the_issuer_dn_is_written_as_java_writes_it(
        self, attributes: Sequence[tuple[x509.ObjectIdentifier, str]], rendered: str
    ) -> None:
        """Checked against X500Principal.getName() by the JDK (see the next test)."""
        name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = issue(name, key.public_key(), name, key, 5)
        assert cert_facts(cert.public_bytes(serialization.Encoding.DER)).issuer == rendered

    def test_the_jdk_running_the_sdks_algorithm_agrees(self, tmp_path: Path) -> None:
        java = shutil.which("java")
        if java is None:
            infra_missing("Java", "install a JDK (Java 17, as the Kafka broker needs)")
        (tmp_path / "CertSn.java").write_text(JAVA_SN)
        names = [
            [
                (NameOID.COUNTRY_NAME, "CN"),
                (NameOID.ORGANIZATION_NAME, 'A, B + "C" <d>; e=f #g \\h'),
                (NameOID.COMMON_NAME, " #x  "),
            ],
            [
                (NameOID.ORGANIZATION_NAME, "蚂蚁金服"),
                (NameOID.EMAIL_ADDRESS, "ca@example.com"),
                (NameOID.DOMAIN_COMPONENT, "ant"),
            ],
        ]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        odd = []
        for i, attributes in enumerate(names):
            name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
            odd.append(issue(name, key.public_key(), name, key, 2**100 + i))
        readable = as_pem(CHAIN.app, CHAIN.alipay, CHAIN.root, CHAIN.ec_root, CHAIN.legacy_root, *odd)
        (tmp_path / "certs.pem").write_text(readable)
        (tmp_path / "root.pem").write_text(as_pem(CHAIN.root, CHAIN.ec_root, CHAIN.legacy_root))
        run = subprocess.run(
            [java, "CertSn.java", "certs.pem", "root.pem"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[:-1] == [c.sn for c in read_pem_chain(readable)]
        assert lines[-1] == root_cert_sn(as_pem(CHAIN.root, CHAIN.ec_root, CHAIN.legacy_root))


# The official Java SDK's AntCertificationUtil.getCertSN / getRootCertSN, in the fewest lines: the MD5 of
# getIssuerX500Principal().getName() + getSerialNumber(), padded to 32 hex digits; the root's joined by `_`
# over the certificates whose signature algorithm OID starts with 1.2.840.113549.1.1.
JAVA_SN = """
import java.io.FileInputStream;
import java.math.BigInteger;
import java.security.MessageDigest;
import java.security.cert.*;
import java.util.*;

public class CertSn {
    static String sn(X509Certificate c) throws Exception {
        MessageDigest md = MessageDigest.getInstance("MD5");
        md.update((c.getIssuerX500Principal().getName() + c.getSerialNumber()).getBytes("UTF-8"));
        String s = new BigInteger(1, md.digest()).toString(16);
        while (s.length() < 32) s = "0" + s;
        return s;
    }
    static List<X509Certificate> read(String path) throws Exception {
        List<X509Certificate> out = new ArrayList<>();
        try (FileInputStream in = new FileInputStream(path)) {
            for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                out.add((X509Certificate) c);
            }
        }
        return out;
    }
    public static void main(String[] args) throws Exception {
        for (X509Certificate c : read(args[0])) System.out.println(sn(c));
        List<String> root = new ArrayList<>();
        for (X509Certificate c : read(args[1])) {
            if (c.getSigAlgOID().startsWith("1.2.840.113549.1.1")) root.add(sn(c));
        }
        System.out.println(String.join("_", root));
    }
}
"""


# ---------------------------------------------------------------- the adapter in certificate mode


@pytest.fixture
async def gateway() -> AsyncIterator[FakeAlipay]:
    async with running_gateway() as fake:
        yield fake


class TestRequestsAndAnswers:
    async def test_requests_carry_both_serials_signed_and_a_verified_answer_pays(
        self, gateway: FakeAlipay
    ) -> None:
        in_cert_mode(gateway)
        alipay = cert_provider(gateway)
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert result.outcome is Outcome.paid
        (request,) = gateway.requests
        assert request["method"] == TRANSFER
        assert (request["app_cert_sn"], request["alipay_root_cert_sn"]) == gateway.cert_sns
        assert json.loads(request["biz_content"])["out_biz_no"] == "po_1"

    async def test_serials_alipay_does_not_expect_are_refused_and_nothing_moves(
        self, gateway: FakeAlipay
    ) -> None:
        """A check that the gateway checks: another root bundle gives another alipay_root_cert_sn."""
        in_cert_mode(gateway)
        alipay = cert_provider(gateway, root=as_pem(CHAIN.root))
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert (result.outcome, result.code) == (Outcome.unknown, "isv.cert-sn-mismatch")
        assert gateway.executed == {}

    async def test_an_answer_signed_with_another_key_is_not_believed(self, gateway: FakeAlipay) -> None:
        """Verified with the key of Alipay's certificate: one signed by any other key is refused, though
        the transfer was made; the payout stays unknown, to be queried."""
        in_cert_mode(gateway)
        gateway.signing_key = new_key()[0]
        alipay = cert_provider(gateway)
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert (result.outcome, result.code) == (Outcome.unknown, "INVALID_RESPONSE_SIGNATURE")

    async def test_an_answer_from_a_renewed_certificate_is_not_believed(self, gateway: FakeAlipay) -> None:
        in_cert_mode(gateway)
        gateway.alipay_cert_sn = "0" * 32
        alipay = cert_provider(gateway)
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert (result.outcome, result.code) == (Outcome.unknown, "ALIPAY_CERT_CHANGED")


class TestCheckedAtStart:
    def other_alipay(self, valid: tuple[datetime, datetime] = VALID) -> str:
        """Another certificate for Alipay's key from the real intermediate."""
        issuer, key = CHAIN.intermediate.subject, CHAIN.intermediate_key
        return as_pem(
            issue(CHAIN.alipay.subject, ALIPAY_KEY.public_key(), issuer, key, 9, valid=valid),
            CHAIN.intermediate,
        )

    def test_the_app_certificate_must_be_the_app_keys(self, gateway: FakeAlipay) -> None:
        other = issue(
            CHAIN.app.subject,
            new_key()[0].public_key(),
            CHAIN.intermediate.subject,
            CHAIN.intermediate_key,
            3,
        )
        with pytest.raises(ValueError, match="not for PAYOUT_WORKER_ALIPAY_PRIVATE_KEY"):
            cert_provider(gateway, app=as_pem(other))

    def test_alipays_certificate_must_chain_to_the_root(self, gateway: FakeAlipay) -> None:
        stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        stranger = ca_name("Test Class 2 R1")  # the same name, another key: a forgery of the issuer
        forged = issue(CHAIN.alipay.subject, ALIPAY_KEY.public_key(), stranger, stranger_key, 9)
        fake_ca = issue(stranger, stranger_key.public_key(), stranger, stranger_key, 10, ca=True)
        with pytest.raises(ValueError, match="does not chain"):
            cert_provider(gateway, alipay=as_pem(forged, fake_ca))
        cert_provider(gateway, alipay=self.other_alipay())  # the real issuer: accepted

    def test_an_expired_certificate_is_refused(self, gateway: FakeAlipay) -> None:
        expired = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
        with pytest.raises(ValueError, match="Alipay's certificate is valid from 2020-01-01 to 2025-01-01"):
            cert_provider(gateway, alipay=self.other_alipay(valid=expired))

    def test_not_a_certificate(self, gateway: FakeAlipay) -> None:
        with pytest.raises(ValueError, match="no PEM certificate"):
            cert_provider(gateway, root="alipayRootCert.crt")


# ---------------------------------------------------------------- settings and the worker


CERT_SETTINGS = {"provider": "alipay", "alipay_app_id": APP_ID, "alipay_private_key": APP_PRIVATE}
PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql+asyncpg://u:p@db:5432/",
    "kafka_bootstrap_servers": "kafka:9092",
    "kafka_security_protocol": "SASL_SSL",  # for the broker's own check, where it exists
    "kafka_username": "payout-worker",
    "kafka_password": "secret",
    **TRUSTED,
}


def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, text in (("app", CHAIN.app_pem), ("public", CHAIN.alipay_pem), ("root", CHAIN.root_pem)):
        path = tmp_path / f"{name}.crt"
        path.write_text(text)
        paths[f"alipay_{name}_cert"] = str(path)
    return paths


class TestSettings:
    @pytest.mark.parametrize("missing", ["alipay_app_cert", "alipay_public_cert", "alipay_root_cert"])
    def test_half_configured_certificate_mode_refuses_to_start(self, tmp_path: Path, missing: str) -> None:
        given = {k: v for k, v in files(tmp_path).items() if k != missing}
        with pytest.raises(ValueError, match=f"half configured: set PAYOUT_WORKER_{missing.upper()}"):
            Settings(**CERT_SETTINGS, **given)

    def test_one_mode_at_a_time(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="not both"):
            Settings(**CERT_SETTINGS, **files(tmp_path), alipay_public_key="-----BEGIN PUBLIC KEY-----")

    def test_production_pays_through_alipay_in_certificate_mode_only(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="cannot pay through the simulator"):
            Settings(**PRODUCTION)
        with pytest.raises(ValueError, match="production pays through Alipay in certificate mode"):
            Settings(**PRODUCTION, **CERT_SETTINGS, alipay_public_key="-----BEGIN PUBLIC KEY-----")
        assert Settings(**PRODUCTION, **CERT_SETTINGS, **files(tmp_path)).alipay_certificate_mode
        # development keeps the simulator and public-key mode (Alipay's sandbox)
        assert Settings().provider == "simulator"
        Settings(**CERT_SETTINGS, alipay_public_key="-----BEGIN PUBLIC KEY-----")

    async def test_a_payout_paid_in_certificate_mode_from_files_and_from_pem(
        self, gateway: FakeAlipay, tmp_path: Path
    ) -> None:
        in_cert_mode(gateway)
        as_text = {
            "alipay_app_cert": CHAIN.app_pem,
            "alipay_public_cert": CHAIN.alipay_pem,
            "alipay_root_cert": CHAIN.root_pem,
        }
        for i, certs in enumerate((files(tmp_path), as_text)):
            (tmp_path / str(i)).mkdir()
            async for w in running_worker(
                tmp_path / str(i), alipay_gateway=gateway.url, **CERT_SETTINGS, **certs
            ):
                await w.deliver(approved(f"cb-{i}"))
                await w.call("POST", "/v1/batches/flush", "ops")
                await w.tick()
                assert await w.statuses() == {f"cb-{i}": "paid"}
        assert gateway.cert_sns is not None
        assert [r["app_cert_sn"] for r in gateway.requests] == [gateway.cert_sns[0]] * 2
