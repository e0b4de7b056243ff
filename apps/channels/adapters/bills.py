"""What every adapter's bill parsing shares: bounded memos for the values a bill repeats.

A bill of a million lines repeats a few thousand amounts and one time per second of the day:
each distinct text is parsed once (exactly, through apps.core.money), then looked up.
"""

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from apps.core.money import minor_of_decimal_string


class Memo(dict):
    """text → parsed value, each text parsed once; bounded, so a bill of all-distinct values
    costs no more memory than LIMIT entries. The parser's ValueError propagates."""

    LIMIT = 200_000

    def __init__(self, parse: Callable[[str], object]):
        super().__init__()
        self.parse = parse

    def __missing__(self, key: str):
        value = self.parse(key)
        if len(self) < self.LIMIT:
            self[key] = value
        return value


def minor_units(currency: str, *, rounding: str | None = None, size: bool = False) -> Memo:
    """A bill's major-unit text ("-7.50") → signed minor units (-750), or with `size` their size
    (750: bills sign by direction, standard lines say it in `kind`); exact unless `rounding`
    names the rule for finer values (WeChat's fees to 1/1000 fen, settled in whole fen)."""
    if size:
        return Memo(lambda text: abs(minor_of_decimal_string(text, currency, rounding=rounding)))
    return Memo(lambda text: minor_of_decimal_string(text, currency, rounding=rounding))


def local_times(zone: ZoneInfo, fmt: str | None = None) -> Memo:
    """A bill's local time text (`fmt`, default ISO 8601: `2026-01-15 10:00:00`) → an aware
    datetime in the provider's zone."""
    if fmt is None:
        return Memo(lambda text: datetime.fromisoformat(text).replace(tzinfo=zone))
    return Memo(lambda text: datetime.strptime(text, fmt).replace(tzinfo=zone))
