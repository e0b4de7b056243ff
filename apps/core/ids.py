"""Public ids: a prefix and 24 random URL-safe characters, as Ping++ (`ch_…`, `evt_…`)."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_KEPT = 256 - 256 % len(_ALPHABET)  # bytes below this map evenly onto the alphabet (4 × 62)


def random_token(length: int = 24) -> str:
    """`length` characters of the alphabet, uniformly at random from the OS's CSPRNG: one read of
    random bytes (secrets.choice reads once per character), bytes ≥ 248 dropped so none is favoured."""
    chars: list[str] = []
    while len(chars) < length:
        chars += [_ALPHABET[b % len(_ALPHABET)] for b in secrets.token_bytes(length + length // 4) if b < _KEPT]
    return "".join(chars[:length])


def new_public_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{random_token(length)}"


def public_id_factory(prefix: str, length: int = 24):
    """A callable for a model field default (migrations serialise it by import path)."""
    return PublicIdFactory(prefix, length)


class PublicIdFactory:
    def __init__(self, prefix: str, length: int = 24):
        self.prefix = prefix
        self.length = length

    def __call__(self) -> str:
        return new_public_id(self.prefix, self.length)

    def deconstruct(self):
        return ("apps.core.ids.PublicIdFactory", (self.prefix, self.length), {})

    def __eq__(self, other):
        return isinstance(other, PublicIdFactory) and (self.prefix, self.length) == (other.prefix, other.length)
