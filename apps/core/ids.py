"""Public ids: a prefix and 24 random URL-safe characters, as Ping++ (`ch_…`, `evt_…`)."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


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
