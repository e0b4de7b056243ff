"""Signatures and secrets at rest.

RSA: RSASSA-PKCS1-v1_5 with SHA-256, base64 signatures (Ping++ request, response and webhook
signatures). Data keys: AES-256-GCM with key ids, so keys can be rotated without downtime.
Ciphertext format: `v1:<kid>:<base64(nonce || ciphertext || tag)>`.
"""

import base64
import binascii
import functools
import hashlib
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings


class KeyError_(ValueError):
    """A key could not be loaded or is missing."""


# --- RSA ---------------------------------------------------------------------------------------


def rsa_generate(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM (what the SDKs of Ping++, Alipay and WeChat Pay all accept)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """X.509 SubjectPublicKeyInfo PEM."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@functools.lru_cache(maxsize=256)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyError_("not a PEM RSA private key") from exc


@functools.lru_cache(maxsize=1024)
def load_public_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise KeyError_("not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyError_("not an RSA public key")
    return key


def rsa_sign(private_pem: str, message: bytes) -> str:
    signature = load_private_key(private_pem).sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa_verify(public_pem: str, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        load_public_key(public_pem).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- data keys (AES-GCM) -----------------------------------------------------------------------


def _parse_data_keys(spec: str) -> list[tuple[str, bytes]]:
    keys = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kid, _, encoded = item.partition(":")
        key = base64.b64decode(encoded)
        if len(key) != 32:
            raise KeyError_(f"data key {kid!r} must be 32 bytes (AES-256)")
        keys.append((kid, key))
    return keys


@functools.lru_cache(maxsize=4)
def _data_keys(spec: str, secret_key: str) -> tuple[str, dict[str, bytes]]:
    keys = _parse_data_keys(spec)
    if not keys:
        # Development default: a key derived from SECRET_KEY. Production sets PAYSYS_DATA_KEYS.
        keys = [("dev", hashlib.sha256(b"paysys-data-key:" + secret_key.encode()).digest())]
    return keys[0][0], dict(keys)


def data_keys() -> tuple[str, dict[str, bytes]]:
    """(active key id, {key id: key}) from settings.PAYSYS_DATA_KEYS."""
    return _data_keys(settings.PAYSYS_DATA_KEYS, settings.SECRET_KEY)


def encrypt(plaintext: str, *, kid: str | None = None) -> str:
    active, keys = data_keys()
    kid = kid or active
    nonce = os.urandom(12)
    sealed = AESGCM(keys[kid]).encrypt(nonce, plaintext.encode(), kid.encode())
    return f"v1:{kid}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(token: str) -> str:
    version, kid, encoded = token.split(":", 2)
    if version != "v1":
        raise KeyError_(f"unknown ciphertext version {version!r}")
    _, keys = data_keys()
    if kid not in keys:
        raise KeyError_(f"data key {kid!r} is not configured")
    raw = base64.b64decode(encoded)
    return AESGCM(keys[kid]).decrypt(raw[:12], raw[12:], kid.encode()).decode()


def key_id_of(token: str) -> str:
    return token.split(":", 2)[1]
