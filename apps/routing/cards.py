"""Card details in a charge's `extra`: read once for routing, then removed before anything is stored.

Only the BIN (first six digits), the last four and a keyed fingerprint are kept. The fingerprint is
HMAC-SHA256 of the digits under `PAYSYS_CARD_FINGERPRINT_KEY` (or, when that is empty, a key derived
from `SECRET_KEY`): the same card gives the same fingerprint, and without the key it reveals nothing.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings

from apps.routing.engine import CARD_METHOD
from apps.routing.exceptions import CardInvalid

CARD_NUMBER = "card_number"
# Removed from the stored extra whatever the method: none of these may ever reach a table or a log.
SENSITIVE_KEYS = frozenset({"card_number", "cvv", "cvn", "cvv2", "card_cvv", "card_expiry", "expiry"})


@dataclass(frozen=True)
class Card:
    number: str  # held in memory for the BIN lookup only; never stored
    bin: str
    last4: str
    fingerprint: str

    def __repr__(self) -> str:  # no digits in tracebacks or logs
        return f"Card(bin={self.bin}, last4={self.last4})"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _fingerprint_key() -> bytes:
    configured = getattr(settings, "PAYSYS_CARD_FINGERPRINT_KEY", "")
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"paysys card fingerprint", hashlib.sha256).digest()


def card_fingerprint(digits: str) -> str:
    return hmac.new(_fingerprint_key(), digits.encode(), hashlib.sha256).hexdigest()


def card_from_extra(*, method: str, extra: dict) -> tuple[Card | None, dict]:
    """(the card, the extra without card details). bank_card requires `extra.card_number`."""
    raw = extra.get(CARD_NUMBER)
    cleaned = {k: v for k, v in extra.items() if k not in SENSITIVE_KEYS}
    if raw is None:
        if method == CARD_METHOD:
            raise CardInvalid("bank_card needs extra[card_number].", param="extra[card_number]")
        return None, cleaned
    digits = "".join(ch for ch in str(raw) if ch not in " -")
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not _luhn_ok(digits):
        raise CardInvalid("extra[card_number] is not a valid card number.", param="extra[card_number]")
    return Card(number=digits, bin=digits[:6], last4=digits[-4:], fingerprint=card_fingerprint(digits)), cleaned
