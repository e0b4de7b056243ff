"""Alipay's open-platform wire rules, as the sandbox must speak them (PROVIDERS.md A1-A4).

Pure functions: sign strings, the signed response envelope, notification signatures, times and
amounts in Alipay's formats. No database access here.
"""

import json
import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from apps.core import crypto

ALIPAY_TZ = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_TOTAL_AMOUNT = Decimal("100000000.00")


# --- requests ----------------------------------------------------------------------------------


def request_sign_content(params: dict[str, str], *, skip_empty: bool = False) -> str:
    """What the merchant signed: every parameter but `sign` (sign_type included), sorted, k=v&…

    python-alipay-sdk signs all parameters it sends (it never sends empty ones); the official
    Java SDK skips empty values. `skip_empty` gives the latter reading.
    """
    items = sorted((k, v) for k, v in params.items() if k != "sign" and (v != "" or not skip_empty))
    return "&".join(f"{k}={v}" for k, v in items)


def request_signature_valid(params: dict[str, str], app_public_key_pem: str) -> bool:
    signature = params.get("sign", "")
    if not signature:
        return False
    return any(
        crypto.rsa_verify(app_public_key_pem, request_sign_content(params, skip_empty=skip).encode(), signature)
        for skip in (False, True)
    )


# --- sync responses ----------------------------------------------------------------------------


def json_text(value) -> str:
    """JSON with no `{` or `}` inside string values (escaped as \\u007b / \\u007d).

    python-alipay-sdk finds the signed node by counting braces without regard to quotes, so a
    brace inside a value (a merchant's subject, say) would cut the node short and break the
    signature. The escapes are valid JSON and decode to the same characters.
    """
    if isinstance(value, dict):
        return "{" + ",".join(f"{json_text(str(k))}:{json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("{", "\\u007b").replace("}", "\\u007d")
    return json.dumps(value)


def response_envelope(node_name: str, node: dict, alipay_private_key_pem: str | None) -> str:
    """`{"<node_name>":{…},"sign":"…"}`: the node first, signed over its exact text (UTF-8).

    The node is serialised once and spliced into the envelope, so the bytes the client extracts
    are exactly the bytes that were signed. Without a key (unknown app) the answer is unsigned.
    """
    node_text = json_text(node)
    envelope = f"{json_text(node_name)}:{node_text}"
    if alipay_private_key_pem:
        signature = crypto.rsa_sign(alipay_private_key_pem, node_text.encode("utf-8"))
        envelope += f",{json_text('sign')}:{json_text(signature)}"
    return "{" + envelope + "}"


def response_node_name(method: str) -> str:
    return method.replace(".", "_") + "_response"


# --- notifications -----------------------------------------------------------------------------


def notification_sign_content(fields: dict[str, str]) -> str:
    """The official notification rule (rsaCheckV1): drop sign and sign_type and empty values, sort."""
    items = sorted((k, v) for k, v in fields.items() if k not in ("sign", "sign_type") and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def notification_form(fields: dict[str, str], alipay_private_key_pem: str) -> dict[str, str]:
    """The form Alipay POSTs: the fields (never an empty one), sign_type=RSA2 and sign."""
    form = {k: str(v) for k, v in fields.items() if v is not None and str(v) != ""}
    form["sign_type"] = "RSA2"
    form["sign"] = crypto.rsa_sign(alipay_private_key_pem, notification_sign_content(form).encode("utf-8"))
    return form


# --- values ------------------------------------------------------------------------------------


def format_time(value: datetime | None) -> str:
    return value.astimezone(ALIPAY_TZ).strftime(TIME_FORMAT) if value else ""


def parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=ALIPAY_TZ)
    except (TypeError, ValueError):
        return None


def format_amount(value: Decimal) -> str:
    return f"{value:.2f}"


def parse_amount(value) -> Decimal | None:
    """A `total_amount` as sent (a JSON string or number): yuan with at most two decimals."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount.as_tuple().exponent < -2 or amount < Decimal("0.01"):
        return None
    return amount.quantize(Decimal("0.01"))


def new_trade_no(now: datetime) -> str:
    """28 digits as Alipay's: the local date, `2200`, then 16 random digits."""
    return now.astimezone(ALIPAY_TZ).strftime("%Y%m%d") + "2200" + random_digits(16)


def random_digits(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def parse_timeout_express(value: str) -> int | None:
    """`timeout_express` (`90m`, `2h`, `1d`, `1c` = end of today) in minutes; None if unreadable."""
    value = (value or "").strip().lower()
    if len(value) < 2 or not value[:-1].isdigit():
        return None
    number, unit = int(value[:-1]), value[-1]
    minutes = {"m": 1, "h": 60, "d": 1440}.get(unit)
    if unit == "c":
        return -1 if number == 1 else None  # the caller resolves "end of today"
    if minutes is None or number < 1:
        return None
    return min(number * minutes, 15 * 1440)
