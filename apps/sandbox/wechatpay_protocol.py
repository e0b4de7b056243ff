"""WeChat Pay API v3's wire rules, as the sandbox must speak them (PROVIDERS.md B1-B5).

Pure functions: the request signature (`Authorization`), response and notification signature
headers, the AES-256-GCM resource, times, ids and the trade bill text. No database access here.
"""

import base64
import hashlib
import json
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.core import crypto

WECHAT_TZ = ZoneInfo("Asia/Shanghai")
AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
MAX_CLOCK_SKEW_SECONDS = 300
FEE_RATE = Decimal("0.006")  # the sandbox's 0.60% rate, written in the bill as `0.60%`
BILL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# --- requests ----------------------------------------------------------------------------------

_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Authorization:
    mchid: str
    serial_no: str
    nonce_str: str
    timestamp: str
    signature: str


def parse_authorization(header: str) -> Authorization | None:
    """`WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",…` (parameters in any order)."""
    schema, _, rest = (header or "").strip().partition(" ")
    if schema != AUTH_SCHEMA:
        return None
    params = dict(_AUTH_PARAM.findall(rest))
    try:
        return Authorization(
            mchid=params["mchid"],
            serial_no=params["serial_no"],
            nonce_str=params["nonce_str"],
            timestamp=params["timestamp"],
            signature=params["signature"],
        )
    except KeyError:
        return None


def request_message(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """`METHOD\\nPATH(with query)\\nTIMESTAMP\\nNONCE\\nBODY\\n`, over the raw body bytes."""
    return f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def timestamp_fresh(timestamp: str, *, now: float | None = None) -> bool:
    if not timestamp.isdigit():
        return False
    return abs((now if now is not None else time.time()) - int(timestamp)) <= MAX_CLOCK_SKEW_SECONDS


# --- responses and notifications ----------------------------------------------------------------


def signature_headers(body: bytes, *, private_key_pem: str, serial: str) -> dict[str, str]:
    """The five `Wechatpay-*` headers of a signed answer or notification (`TS\\nNONCE\\nBODY\\n`)."""
    timestamp = str(int(time.time()))
    nonce = new_nonce()
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": crypto.rsa_sign(private_key_pem, message),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": AUTH_SCHEMA,
    }


def json_body(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_document(code: str, message: str, detail: dict | None = None) -> dict:
    document = {"code": code, "message": message}
    if detail:
        document["detail"] = detail
    return document


def aes_gcm_encrypt(plaintext: str, *, apiv3_key: str, associated_data: str) -> dict:
    """An `encrypt-resource`: 12-character nonce (as UTF-8 bytes), base64(ciphertext ‖ tag)."""
    nonce = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(sealed).decode(),
        "nonce": nonce,
        "associated_data": associated_data,
    }


def notification_envelope(
    *,
    event_id: str,
    create_time: str,
    event_type: str,
    summary: str,
    original_type: str,
    resource: dict,
    apiv3_key: str,
) -> dict:
    encrypted = aes_gcm_encrypt(
        json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
        apiv3_key=apiv3_key,
        associated_data=original_type,
    )
    return {
        "id": event_id,
        "create_time": create_time,
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {**encrypted, "original_type": original_type},
    }


# --- values ------------------------------------------------------------------------------------


def format_time(value: datetime | None) -> str:
    """RFC 3339 in China time, as WeChat writes it: `2018-06-08T10:34:56+08:00`."""
    return value.astimezone(WECHAT_TZ).isoformat(timespec="seconds") if value else ""


def parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None


def new_nonce() -> str:
    return uuid.uuid4().hex.upper()


def random_digits(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def new_transaction_id(now: datetime) -> str:
    """28 digits as WeChat's: `42000` + 5 digits, the local date, 10 random digits."""
    return "42000" + random_digits(5) + now.astimezone(WECHAT_TZ).strftime("%Y%m%d") + random_digits(10)


def new_refund_id(now: datetime) -> str:
    return "50000" + random_digits(5) + now.astimezone(WECHAT_TZ).strftime("%Y%m%d") + random_digits(10)


def new_prepay_id(now: datetime) -> str:
    return "wx" + now.astimezone(WECHAT_TZ).strftime("%d%H%M%S") + secrets.token_hex(13)


def yuan(fen: int) -> str:
    return f"{Decimal(fen).scaleb(-2):.2f}"


def fee_of(fen: int) -> Decimal:
    """The fee on an amount at FEE_RATE, in yuan with five decimals (as bills write it)."""
    return (Decimal(fen).scaleb(-2) * FEE_RATE).quantize(Decimal("0.00001"), rounding=ROUND_HALF_UP)


# --- trade bill (ALL) --------------------------------------------------------------------------

BILL_HEADER_ALL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注"
)
BILL_SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
BILL_COLUMNS = BILL_HEADER_ALL.split(",")


def bill_row(values: dict[str, str]) -> str:
    """One data row: every cell backtick-prefixed, missing cells empty (just the backtick)."""
    return ",".join("`" + str(values.get(column, "")) for column in BILL_COLUMNS)


def bill_text(rows: list[dict[str, str]]) -> str:
    """The ALL trade bill: header, rows, summary header, summary row; `\\r\\n` line ends.

    Totals are computed from the rows as written (so an altered row is consistent with its
    summary, as a provider-side error would be).
    """
    settled = sum((Decimal(r["应结订单金额"]) for r in rows), Decimal("0.00"))
    refunded = sum((Decimal(r["退款金额"]) for r in rows), Decimal("0.00"))
    fees = sum((Decimal(r["手续费"]) for r in rows), Decimal("0.00000"))
    ordered = sum((Decimal(r["订单金额"]) for r in rows), Decimal("0.00"))
    requested = sum((Decimal(r["申请退款金额"]) for r in rows), Decimal("0.00"))
    summary = [str(len(rows)), f"{settled:.2f}", f"{refunded:.2f}", "0.00", f"{fees:.5f}", f"{ordered:.2f}",
               f"{requested:.2f}"]  # fmt: skip
    lines = [BILL_HEADER_ALL, *(bill_row(r) for r in rows), BILL_SUMMARY_HEADER, ",".join("`" + v for v in summary)]
    return "\r\n".join(lines) + "\r\n"


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # WeChat's bill hash_type is SHA1
