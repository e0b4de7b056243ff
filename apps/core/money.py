"""The one place where money changes form: wire minor units <-> django-money Money <-> ledger ints.

Each currency's exponent comes from ISO 4217 (JPY 0, CNY 2, KWD 3). Converting minor units to
Money is exact. Converting Money to minor units refuses any value that is not a whole number of
minor units: rounding must be chosen explicitly by the caller with `quantize_minor`.
"""

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from moneyed import Currency, Money, get_currency
from moneyed.classes import CurrencyDoesNotExist

from apps.core.errors import InvalidRequest

# ISO 4217 minor-unit exponents for the currencies whose exponent is not 2.
_EXPONENTS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip

SUPPORTED_CURRENCIES = frozenset(settings.CURRENCIES)
MAX_MINOR = 2**63  # minor units are stored as bigint


def currency_of(code: str) -> Currency:
    """The Currency for a wire code (`cny`); InvalidRequest for an unknown or unsupported one."""
    upper = (code or "").upper()
    if upper not in SUPPORTED_CURRENCIES:
        raise InvalidRequest(f"Unsupported currency: {code!r}.", code="currency_unsupported", param="currency")
    try:
        return get_currency(upper)
    except CurrencyDoesNotExist as exc:  # pragma: no cover - SUPPORTED_CURRENCIES are all ISO
        raise InvalidRequest(f"Unknown currency: {code!r}.", param="currency") from exc


def exponent(currency: Currency | str) -> int:
    code = currency.code if isinstance(currency, Currency) else currency.upper()
    return _EXPONENTS.get(code, 2)


def from_minor(amount: int, currency: Currency | str) -> Money:
    """Exact: 100 fen -> Money('1.00', 'CNY')."""
    cur = currency if isinstance(currency, Currency) else currency_of(currency)
    return Money(Decimal(amount).scaleb(-exponent(cur)), cur)


def to_minor(money: Money) -> int:
    """Exact: Money('1.00', 'CNY') -> 100. Refuses fractions of a minor unit."""
    scaled = money.amount.scaleb(exponent(money.currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{money} is not a whole number of minor units; quantize it explicitly first")
    return int(scaled)


def quantize_minor(money: Money, rounding: str = ROUND_HALF_UP) -> Money:
    """Round to whole minor units with the rounding rule the caller names."""
    quantum = Decimal(1).scaleb(-exponent(money.currency))
    return Money(money.amount.quantize(quantum, rounding=rounding), money.currency)


def wire_currency(currency: Currency | str) -> str:
    return (currency.code if isinstance(currency, Currency) else currency).lower()


def to_decimal_string(money: Money) -> str:
    """Major units with the currency's exponent, as providers want them: 1.00 CNY -> "1.00"."""
    return f"{quantize_minor(money).amount:.{exponent(money.currency)}f}"


def minor_of_decimal_string(value: str, currency: Currency | str, *, rounding: str | None = None) -> int:
    """A provider's major-unit string ("-7.50") as integer minor units (-750) of the currency.

    Exact unless `rounding` names the rule for a value finer than a minor unit (a bill's fee to
    1/1000 fen); ValueError for anything that is not a finite decimal number in ASCII, too fine
    without a rule, or beyond a bigint. Bulk paths (bill files) use it where a Money per value
    would cost too much.
    """
    places = exponent(currency)
    sign, digits = (-1, value[1:]) if value[:1] == "-" else (1, value)
    whole, dot, fraction = digits.partition(".")
    plain = whole.isascii() and whole.isdigit() and fraction.isascii() and (fraction.isdigit() or not dot)
    if plain and len(fraction) <= places and len(whole) + places < 19:  # in range of a bigint: no Decimal
        return sign * (int(whole) * 10**places + int(fraction.ljust(places, "0") or "0"))
    if not value.isascii():  # Decimal would read other scripts' digits
        raise ValueError(f"{value!r} is not a number")
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a number")
    scaled = number.scaleb(places)
    if scaled != scaled.to_integral_value():
        if rounding is None:
            raise ValueError(f"{value!r} is finer than a minor unit of {currency}")
        scaled = scaled.to_integral_value(rounding=rounding)
    if abs(scaled) >= MAX_MINOR:
        raise ValueError(f"{value!r} is out of range")
    return int(scaled)


def parse_decimal_string(value: str, currency: Currency | str) -> Money:
    """A provider's major-unit string ("1.00") as exact Money."""
    cur = currency if isinstance(currency, Currency) else currency_of(currency)
    return Money(Decimal(str(value)), cur)
