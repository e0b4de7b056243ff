"""UnionPay ACP 5.1.0 signed form protocol, merchant side, written with `cryptography` (PROVIDERS.md C).

- Signing (signMethod 01): sort the non-empty fields but `signature`, join `k=v&…` with raw
  values, take the lowercase SHA-256 hex of that, and RSA-SHA256 (PKCS#1 v1.5) sign the hex
  string; base64. `certId` (the merchant certificate's serial in decimal) is set before signing.
- Verifying an answer or a notification: the signer's certificate travels in `signPubKeyCert`
  (PEM, `\\r\\n` line ends, itself signed). It must be valid now, chain to the configured middle
  and root certificates, and carry UnionPay's CN (3rd `@` segment 中国银联股份有限公司, or
  `00040000:SIGN` in test mode when `validate_cn_name` is off); then the RSA check as above.
- Sync answers are `k=v&k=v` with raw values, split on `&` outside `{}`/`[]` (parseQString).
"""

import base64
import binascii
import functools
import hashlib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

PRODUCTION_CN_SEGMENT = "中国银联股份有限公司"
TEST_CN_SEGMENT = "00040000:SIGN"


class SignatureInvalid(Exception):
    """The fields' signature, or the certificate that made it, does not verify."""


def sign_content(fields: dict[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "signature" and v != "")


def _digest_hex(fields: dict[str, str]) -> bytes:
    return hashlib.sha256(sign_content(fields).encode("utf-8")).hexdigest().encode("ascii")


@functools.lru_cache(maxsize=64)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the signing key is not an RSA key")
    return key


@functools.lru_cache(maxsize=256)
def load_certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.replace("\r\n", "\n").strip().encode() + b"\n")


def sign(fields: dict[str, str], private_key_pem: str) -> str:
    signature = _private_key(private_key_pem).sign(_digest_hex(fields), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def signed_request(fields: dict[str, str], *, private_key_pem: str, cert_id: str) -> dict[str, str]:
    """The request form: empty fields dropped (filterBlank), certId set, then signed."""
    out = {k: str(v) for k, v in fields.items() if v is not None and str(v) != ""}
    out["certId"] = cert_id
    out["signature"] = sign(out, private_key_pem)
    return out


def _check_issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise SignatureInvalid(f"{what} is not issued by the configured certificate") from exc


def _check_valid_now(cert: x509.Certificate, what: str, now: datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SignatureInvalid(f"{what} is outside its validity period")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_sign_cert(pem: str, *, root_pem: str, middle_pem: str, validate_cn_name: bool) -> x509.Certificate:
    """The signing certificate from signPubKeyCert, once its validity, chain and CN check out."""
    try:
        cert = load_certificate(pem)
        middle = load_certificate(middle_pem)
        root = load_certificate(root_pem)
    except ValueError as exc:
        raise SignatureInvalid("signPubKeyCert or a configured CA certificate is not a PEM certificate") from exc
    now = datetime.now(UTC)
    for item, what in ((cert, "signPubKeyCert"), (middle, "the middle certificate"), (root, "the root certificate")):
        _check_valid_now(item, what, now)
    if not (_is_ca(middle) and _is_ca(root)):
        raise SignatureInvalid("the configured middle and root certificates must be CA certificates")
    _check_issued_by(cert, middle, "signPubKeyCert")
    _check_issued_by(middle, root, "the middle certificate")
    _check_issued_by(root, root, "the root certificate")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    segments = str(names[0].value).split("@") if names else []
    allowed = {PRODUCTION_CN_SEGMENT} if validate_cn_name else {PRODUCTION_CN_SEGMENT, TEST_CN_SEGMENT}
    if len(segments) < 3 or segments[2] not in allowed:
        raise SignatureInvalid("signPubKeyCert's CN does not name UnionPay")
    return cert


def verify(fields: dict[str, str], *, root_pem: str, middle_pem: str, validate_cn_name: bool) -> None:
    """Raises SignatureInvalid unless the fields are signed by a UnionPay certificate (C2)."""
    signature = fields.get("signature", "")
    cert_pem = fields.get("signPubKeyCert", "")
    if not signature or not cert_pem:
        raise SignatureInvalid("no signature or no signPubKeyCert")
    cert = verify_sign_cert(cert_pem, root_pem=root_pem, middle_pem=middle_pem, validate_cn_name=validate_cn_name)
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureInvalid("signPubKeyCert does not hold an RSA key")
    try:
        public_key.verify(
            base64.b64decode(signature, validate=True), _digest_hex(fields), padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureInvalid("the signature does not verify") from exc


def parse_qstring(text: str) -> dict[str, str]:
    """The official parseQString: `&` separates pairs only outside `{}`/`[]`; the first `=` splits
    key from value; no decoding. ValueError on a pair without `=`."""
    fields: dict[str, str] = {}
    depth = 0
    start = 0
    for index, char in enumerate(text + "&"):
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth = max(0, depth - 1)
        elif char == "&" and depth == 0:
            pair = text[start:index]
            start = index + 1
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ValueError(f"not a k=v pair: {pair[:40]!r}")
            fields[key] = value
    return fields
