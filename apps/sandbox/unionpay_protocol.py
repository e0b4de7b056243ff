"""UnionPay ACP 5.1.0 wire rules, as the sandbox must speak them (PROVIDERS.md C1-C5).

Pure functions: the sign string and RSA-SHA256 signatures (signMethod 01), the `k=v&…` sync
answer with raw values, certificates for the sandbox's own CA, times and the ZM bill line.
No database access here.
"""

import base64
import io
import secrets
import zipfile
import zlib
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from apps.core import crypto

UNIONPAY_TZ = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y%m%d%H%M%S"
VERSION = "5.1.0"
# The CN UnionPay's test signing certificates carry: the 3rd `@` segment is `00040000:SIGN`
# (production: 中国银联股份有限公司), accepted by merchants only with ifValidateCNName=false.
TEST_SIGN_CN = "041@Z12@00040000:SIGN@00000062"
PRODUCTION_CN_SEGMENT = "中国银联股份有限公司"

# The ZM file's fixed widths (PROVIDERS.md C5), fields separated by one space.
ZM_WIDTHS = (3, 11, 11, 6, 10, 19, 12, 4, 2, 21, 2, 32, 2, 6, 10, 13, 13, 4, 15, 2, 2, 6, 2, 4, 32, 1, 21, 15, 1, 15,
             32, 13, 13, 8, 32, 13, 13, 12, 2, 1, 32, 98)  # fmt: skip


# --- signatures --------------------------------------------------------------------------------


def sign_content(fields: dict[str, str]) -> str:
    """Every non-empty field but `signature`, sorted by key, joined `k=v&…` with raw values."""
    return "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "signature" and v != "")


def sign(fields: dict[str, str], private_key_pem: str) -> str:
    """5.1.0 / signMethod 01: base64(SHA256withRSA(key, sha256_hex(sign string)))."""
    digest_hex = crypto.sha256_hex(sign_content(fields).encode("utf-8"))
    return crypto.rsa_sign(private_key_pem, digest_hex.encode("ascii"))


def signature_valid(fields: dict[str, str], public_key_pem: str) -> bool:
    signature = fields.get("signature", "")
    if not signature:
        return False
    digest_hex = crypto.sha256_hex(sign_content(fields).encode("utf-8"))
    return crypto.rsa_verify(public_key_pem, digest_hex.encode("ascii"), signature)


def signed(fields: dict[str, str], *, private_key_pem: str, sign_cert_pem: str) -> dict[str, str]:
    """The fields (empty ones dropped) with signPubKeyCert and signature, as UnionPay sends them."""
    out = {k: str(v) for k, v in fields.items() if v is not None and str(v) != ""}
    out["signPubKeyCert"] = sign_cert_pem
    out["signature"] = sign(out, private_key_pem)
    return out


def query_string(fields: dict[str, str]) -> str:
    """A sync answer: `k=v&k=v` with raw, not URL-encoded, values (the official parseQString)."""
    return "&".join(f"{k}={v}" for k, v in fields.items())


# --- certificates ------------------------------------------------------------------------------


def _name(cn: str, org: str = "China UnionPay Sandbox") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def issue_certificate(
    *,
    subject_cn: str,
    public_key: rsa.RSAPublicKey,
    issuer_key: rsa.RSAPrivateKey,
    issuer_name: x509.Name | None,
    ca: bool,
    days: int = 3650,
    org: str = "China UnionPay Sandbox",
) -> x509.Certificate:
    """An X.509 certificate; a CA one when `ca`, self-signed when `issuer_name` is None."""
    now = datetime.now(UTC)
    subject = _name(subject_cn, org)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() >> 96)  # ~64 bits: a decimal certId of ~19 digits
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "encipher_only",
         "decipher_only"), False)  # fmt: skip
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage), critical=True
    )
    return builder.sign(issuer_key, hashes.SHA256())


def certificate_pem(cert: x509.Certificate) -> str:
    """PEM with `\\r\\n` line ends, as UnionPay's signPubKeyCert carries it."""
    return cert.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r\n")


def load_certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.replace("\r\n", "\n").encode())


def cert_id(cert: x509.Certificate) -> str:
    """UnionPay's certId: the certificate's serial number in decimal."""
    return str(cert.serial_number)


# --- values ------------------------------------------------------------------------------------


def format_time(value: datetime) -> str:
    return value.astimezone(UNIONPAY_TZ).strftime(TIME_FORMAT)


def parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UNIONPAY_TZ)
    except (TypeError, ValueError):
        return None


def random_digits(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def new_query_id(now: datetime) -> str:
    """21 digits, as UnionPay's queryId: local yyMMddHHmmss then 9 random digits."""
    return now.astimezone(UNIONPAY_TZ).strftime("%y%m%d%H%M%S") + random_digits(9)


def resolve_settle_date(mmdd: str, today: date) -> date | None:
    """`settleDate` is `MMDD` with no year: the latest such date that is not after today + 1."""
    if len(mmdd) != 4 or not mmdd.isdigit():
        return None
    for year in (today.year + 1, today.year, today.year - 1):
        try:
            candidate = date(year, int(mmdd[:2]), int(mmdd[2:]))
        except ValueError:
            continue
        if candidate <= today + timedelta(days=1):
            return candidate
    return None


# --- the reconciliation file -------------------------------------------------------------------


def zm_line(values: list[str]) -> str:
    """One ZM line: each value left-aligned and padded (or cut) to its field's width, GBK-counted."""
    if len(values) != len(ZM_WIDTHS):
        raise ValueError(f"a ZM line has {len(ZM_WIDTHS)} fields, got {len(values)}")
    parts = []
    for value, width in zip(values, ZM_WIDTHS, strict=True):
        raw = str(value).encode("gbk")[:width]
        parts.append(raw.decode("gbk", errors="ignore") + " " * (width - len(raw)))
    return " ".join(parts)


def zm_file_name(settle_date: date, mer_id: str) -> str:
    return f"INN{settle_date.strftime('%y%m%d')}88ZM_{mer_id}"


def bill_archive(*, settle_date: date, mer_id: str, zm_lines: list[str]) -> tuple[str, str]:
    """(fileName, fileContent): a zip with the ZM and ZME files, zlib-deflated, base64 (C5)."""
    folder = f"{mer_id}_{settle_date.strftime('%Y%m%d')}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        body = "".join(line + "\r\n" for line in zm_lines).encode("gbk")
        archive.writestr(f"{folder}/{zm_file_name(settle_date, mer_id)}", body)
        archive.writestr(f"{folder}/INN{settle_date.strftime('%y%m%d')}88ZME_{mer_id}", b"")
    content = base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii")
    return f"{folder}.zip", content
