"""Every write the UnionPay sandbox makes: its PKI, merchants, transactions, notifications, bills.

Lock order: the consume row before any refund row of it (`_txn_lock`); notifications are created
in the transaction of the state change they announce and sent after commit. Faults are consulted
where UnionPay would misbehave (apps/sandbox/faults.py); per-payment faults are scoped by orderId.
"""

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core import crypto
from apps.core.ids import random_token
from apps.sandbox import unionpay_protocol as proto
from apps.sandbox.faults import fault_take
from apps.sandbox.models import (
    FaultKind,
    UnionPayAuthority,
    UnionPayMerchant,
    UnionPayNotification,
    UnionPayTxn,
    UnionPayTxnStatus,
    UnionPayTxnType,
)

logger = logging.getLogger(__name__)

PROVIDER = "unionpay"
NOTIFY_TIMEOUT_SECONDS = 10
LOST_NOTIFICATION_AGE = timedelta(minutes=2)
OUT_OF_ORDER_HOLD = timedelta(minutes=5)  # a held notification goes out anyway after this
DEFAULT_FAULT_SECONDS = 15
FEE_RATE = Decimal("0.006")  # the sandbox's merchant discount rate (0.6 %)
SANDBOX_ACC_NO = "6216261000000000018"  # UnionPay's public test card
_AUTHORITY_LOCK = 0x55504159  # pg advisory lock key for creating the PKI once


class UnionPayError(Exception):
    """An answer with a respCode other than 00 (a business or format error)."""

    def __init__(self, resp_code: str, resp_msg: str):
        super().__init__(f"{resp_code} {resp_msg}")
        self.resp_code = resp_code
        self.resp_msg = resp_msg


# --- the PKI -----------------------------------------------------------------------------------


def unionpay_authority_get() -> UnionPayAuthority:
    """The sandbox's root CA, middle CA and signing certificate, created once on first use."""
    authority = UnionPayAuthority.objects.order_by("id").first()
    if authority is not None:
        return authority
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUTHORITY_LOCK])
        authority = UnionPayAuthority.objects.order_by("id").first()
        if authority is not None:
            return authority
        root_key, middle_key, sign_key = crypto.rsa_generate(), crypto.rsa_generate(), crypto.rsa_generate()
        root = proto.issue_certificate(
            subject_cn="CFCA TEST OCA1 ROOT (sandbox)", public_key=root_key.public_key(), issuer_key=root_key,
            issuer_name=None, ca=True, days=7300,
        )  # fmt: skip
        middle = proto.issue_certificate(
            subject_cn="CFCA TEST OCA1 (sandbox)", public_key=middle_key.public_key(), issuer_key=root_key,
            issuer_name=root.subject, ca=True, days=7300,
        )  # fmt: skip
        signing = proto.issue_certificate(
            subject_cn=proto.TEST_SIGN_CN, public_key=sign_key.public_key(), issuer_key=middle_key,
            issuer_name=middle.subject, ca=False, days=3650,
        )  # fmt: skip
        return UnionPayAuthority.objects.create(
            root_cert_pem=proto.certificate_pem(root),
            root_key_pem=crypto.private_key_pem(root_key),
            middle_cert_pem=proto.certificate_pem(middle),
            middle_key_pem=crypto.private_key_pem(middle_key),
            sign_cert_pem=proto.certificate_pem(signing),
            sign_key_pem=crypto.private_key_pem(sign_key),
        )


def unionpay_sign(fields: dict[str, str]) -> dict[str, str]:
    """Fields signed as UnionPay signs answers and notifications (signPubKeyCert + signature)."""
    authority = unionpay_authority_get()
    return proto.signed(fields, private_key_pem=authority.sign_key_pem, sign_cert_pem=authority.sign_cert_pem)


# --- merchants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnionPayMerchantCreated:
    """A new sandbox merchant and what paysys configures; the signing key is never stored."""

    merchant: UnionPayMerchant
    sign_private_key: str
    authority: UnionPayAuthority

    def credentials(self) -> dict:
        """A paysys channel account's credentials for this merchant (see the adapter's docstring)."""
        return {
            "mer_id": self.merchant.mer_id,
            "sign_cert_id": self.merchant.cert_id,
            "sign_private_key": self.sign_private_key,
            "sign_cert": self.merchant.cert_pem,
            "root_cert": self.authority.root_cert_pem,
            "middle_cert": self.authority.middle_cert_pem,
            "validate_cn_name": False,  # the sandbox signs with a test-mode certificate (00040000:SIGN)
        }


def unionpay_merchant_create(
    *, name: str = "", private_key: rsa.RSAPrivateKey | None = None
) -> UnionPayMerchantCreated:
    """Registers a merchant (a fresh 15-digit merId) and issues its signing certificate.

    UnionPay hands merchants a PFX; the sandbox returns the private key PEM and the certificate's
    decimal serial (certId) once instead.
    """
    authority = unionpay_authority_get()
    key = private_key or crypto.rsa_generate()
    middle = proto.load_certificate(authority.middle_cert_pem)
    middle_key = crypto.load_private_key(authority.middle_key_pem)
    for _ in range(5):
        mer_id = "777" + proto.random_digits(12)
        cert = proto.issue_certificate(
            subject_cn=f"041@Z{mer_id}@{mer_id}:SIGN@00000001", public_key=key.public_key(), issuer_key=middle_key,
            issuer_name=middle.subject, ca=False, days=1825, org="UnionPay sandbox merchant",
        )  # fmt: skip
        try:
            with transaction.atomic():
                merchant = UnionPayMerchant.objects.create(
                    mer_id=mer_id, name=name, cert_pem=proto.certificate_pem(cert), cert_id=proto.cert_id(cert)
                )
            break
        except IntegrityError:  # a merId or serial collision: draw again
            continue
    else:  # pragma: no cover - 10^12 ids
        raise RuntimeError("could not allocate a sandbox merId")
    return UnionPayMerchantCreated(merchant=merchant, sign_private_key=crypto.private_key_pem(key), authority=authority)


# --- faults ------------------------------------------------------------------------------------


def _fault(kind: str, txn: UnionPayTxn, *also_order_ids: str):
    """A fault for this transaction (by its orderId, then e.g. its consume's), else merchant-wide."""
    for order_id in (txn.order_id, *also_order_ids):
        fault = fault_take(provider=PROVIDER, kind=kind, merchant_ref=txn.merchant.mer_id, out_trade_no=order_id)
        if fault is not None:
            return fault
    return None


def fault_for(kind: str, *, merchant: UnionPayMerchant, order_id: str, operation: str | None = None):
    return fault_take(
        provider=PROVIDER, kind=kind, merchant_ref=merchant.mer_id, out_trade_no=order_id, operation=operation
    )


def operation_fails_5xx(*, merchant: UnionPayMerchant | None, operation: str, order_id: str = "") -> bool:
    """The ERROR_5XX fault for `operation` (front, query, refund, file): the gateway did nothing.

    A fault limited to some operations (params.operations) is spent only by those.
    """
    if merchant is None:
        return False
    return fault_for(FaultKind.ERROR_5XX, merchant=merchant, order_id=order_id, operation=operation) is not None


def fault_sleep(fault) -> None:
    """A timeout fault: hold the answer long past any sensible client timeout."""
    time.sleep(float(fault.params.get("seconds", DEFAULT_FAULT_SECONDS)))


# --- consumes ----------------------------------------------------------------------------------


def _txn_lock(txn_id: int) -> UnionPayTxn:
    return UnionPayTxn.objects.select_for_update().select_related("merchant").get(id=txn_id)


def _new_trace(now: datetime) -> dict:
    return {
        "query_id": proto.new_query_id(now),
        "trace_no": proto.random_digits(6),
        "trace_time": now.astimezone(proto.UNIONPAY_TZ).strftime("%m%d%H%M%S"),
    }


def unionpay_front_consume(
    *,
    merchant: UnionPayMerchant,
    order_id: str,
    txn_time: str,
    txn_amt: int,
    channel_type: str,
    front_url: str,
    back_url: str,
    req_reserved: str,
    pay_timeout: datetime | None,
) -> UnionPayTxn:
    """A front consume posted by the payer's browser: a new pending transaction, or the same one
    again when the same form is posted twice (a page reload). Another form for a used orderId is
    a duplicate (respCode 12)."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return UnionPayTxn.objects.create(
                merchant=merchant,
                order_id=order_id,
                txn_time=txn_time,
                txn_type=UnionPayTxnType.CONSUME,
                txn_sub_type="01",
                channel_type=channel_type,
                txn_amt=txn_amt,
                front_url=front_url,
                back_url=back_url,
                req_reserved=req_reserved,
                pay_timeout=pay_timeout,
                pay_token=random_token(32),
                **_new_trace(now),
            )
    except IntegrityError:
        pass
    existing = UnionPayTxn.objects.select_related("merchant").get(merchant=merchant, order_id=order_id)
    if (existing.txn_type, existing.txn_time, existing.txn_amt) != (UnionPayTxnType.CONSUME, txn_time, txn_amt):
        raise UnionPayError("12", "重复交易")
    return existing


def _complete(txn: UnionPayTxn, *, succeed: bool, code: str, message: str, now: datetime) -> None:
    txn.status = UnionPayTxnStatus.SUCCESS if succeed else UnionPayTxnStatus.FAILED
    txn.orig_resp_code = code
    txn.orig_resp_msg = message
    txn.completed_at = now
    if succeed:
        # The sandbox settles on the local calendar day (UnionPay cuts at 23:00; see the docs).
        txn.settle_date = now.astimezone(proto.UNIONPAY_TZ).date()
        txn.acc_no = SANDBOX_ACC_NO
    txn.save(update_fields=["status", "orig_resp_code", "orig_resp_msg", "completed_at", "settle_date", "acc_no"])


def unionpay_consume_settle(*, txn: UnionPayTxn, succeed: bool) -> tuple[UnionPayTxn, bool]:
    """The payer paid (`succeed`) or gave up. Returns (txn, whether it changed); idempotent.

    Paying after payTimeout fails the consume instead (UnionPay refuses the late payment).
    """
    with transaction.atomic():
        locked = _txn_lock(txn.id)
        if locked.is_final:
            return locked, False
        now = timezone.now()
        if locked.pay_timeout is not None and now >= locked.pay_timeout:
            _complete(locked, succeed=False, code="01", message="交易超时", now=now)
            return locked, True
        if succeed:
            _complete(locked, succeed=True, code="00", message="成功[0000000]", now=now)
            _notification_create(locked)
        else:
            _complete(locked, succeed=False, code="01", message="交易失败", now=now)
        return locked, True


# --- refunds -----------------------------------------------------------------------------------


def unionpay_refund(
    *,
    merchant: UnionPayMerchant,
    order_id: str,
    txn_time: str,
    txn_amt: int,
    orig_qry_id: str,
    back_url: str,
    req_reserved: str,
) -> UnionPayTxn:
    """`backTransReq.do` txnType 04: accepted at once (respCode 00), settled and notified after."""
    consume = UnionPayTxn.objects.filter(
        merchant=merchant, query_id=orig_qry_id, txn_type=UnionPayTxnType.CONSUME
    ).first()
    if consume is None or consume.status != UnionPayTxnStatus.SUCCESS:
        raise UnionPayError("35", "原交易不存在或状态不正确")
    existing = UnionPayTxn.objects.filter(merchant=merchant, order_id=order_id).first()
    if existing is not None:
        raise UnionPayError("12", "重复交易")
    now = timezone.now()
    with transaction.atomic():
        locked_consume = _txn_lock(consume.id)
        if txn_amt > locked_consume.txn_amt - locked_consume.refunded_amt:
            raise UnionPayError("36", "退货金额超限")
        try:
            with transaction.atomic():
                refund = UnionPayTxn.objects.create(
                    merchant=merchant,
                    order_id=order_id,
                    txn_time=txn_time,
                    txn_type=UnionPayTxnType.REFUND,
                    txn_sub_type="00",
                    txn_amt=txn_amt,
                    back_url=back_url,
                    req_reserved=req_reserved,
                    orig=locked_consume,
                    **_new_trace(now),
                )
        except IntegrityError as exc:
            raise UnionPayError("12", "重复交易") from exc
        UnionPayTxn.objects.filter(id=locked_consume.id).update(refunded_amt=F("refunded_amt") + txn_amt)
        # The sandbox's bank answers at once; the merchant still learns it only by notification or query.
        _complete(refund, succeed=True, code="00", message="成功[0000000]", now=now)
        refund.merchant = merchant
        _notification_create(refund)
    return refund


# --- notifications -----------------------------------------------------------------------------


def notification_fields(txn: UnionPayTxn) -> dict[str, str]:
    """The unsigned fields of a backend notification for a successful consume or refund (C4)."""
    fields = {
        "version": proto.VERSION,
        "encoding": "UTF-8",
        "signMethod": "01",
        "accessType": "0",
        "bizType": txn.biz_type,
        "txnType": txn.txn_type,
        "txnSubType": txn.txn_sub_type,
        "merId": txn.merchant.mer_id,
        "orderId": txn.order_id,
        "txnTime": txn.txn_time,
        "txnAmt": str(txn.txn_amt),
        "currencyCode": txn.currency_code,
        "settleAmt": str(txn.txn_amt),
        "settleCurrencyCode": txn.currency_code,
        "settleDate": txn.settle_date.strftime("%m%d") if txn.settle_date else "",
        "exchangeRate": "0",
        "queryId": txn.query_id,
        "traceNo": txn.trace_no,
        "traceTime": txn.trace_time,
        "respCode": "00",
        "respMsg": "成功[0000000]",
        "reqReserved": txn.req_reserved,
    }
    if txn.txn_type == UnionPayTxnType.CONSUME:
        fields["accNo"] = txn.acc_no[:6] + "*" * (len(txn.acc_no) - 10) + txn.acc_no[-4:] if txn.acc_no else ""
    else:
        fields["origQryId"] = txn.orig.query_id
    return {k: v for k, v in fields.items() if v != ""}


def _enqueue(notification_id: int, countdown: float = 0) -> None:
    from apps.sandbox import tasks  # tasks imports this module

    if countdown:
        tasks.sandbox_unionpay_notify.apply_async(args=[notification_id], countdown=countdown)
    else:
        tasks.sandbox_unionpay_notify.delay(notification_id)


def _notification_create(txn: UnionPayTxn) -> UnionPayNotification | None:
    """Records the notification of a successful transaction (UnionPay notifies only those) and
    sends it after commit, unless a fault loses, delays, duplicates, alters or holds it."""
    if not txn.back_url:
        return None
    consume_order_ids = (txn.orig.order_id,) if txn.orig_id else ()
    if txn.txn_type == UnionPayTxnType.REFUND and _fault(FaultKind.REFUND_NEVER_NOTIFIES, txn, *consume_order_ids):
        return None
    fields = notification_fields(txn)
    if txn.txn_type == UnionPayTxnType.CONSUME:
        differs = _fault(FaultKind.NOTIFY_AMOUNT_DIFFERS, txn)
        if differs is not None:
            delta = int(differs.params.get("delta", 1))
            fields["txnAmt"] = fields["settleAmt"] = str(txn.txn_amt + delta)
    lost = _fault(FaultKind.NOTIFY_LOST, txn, *consume_order_ids) is not None
    held = txn.txn_type == UnionPayTxnType.CONSUME and _fault(FaultKind.NOTIFY_OUT_OF_ORDER, txn) is not None
    notification = UnionPayNotification.objects.create(
        txn=txn, back_url=txn.back_url, fields=fields, lost=lost, held=held
    )
    if lost or held:
        return notification
    delay = _fault(FaultKind.NOTIFY_DELAY, txn, *consume_order_ids)
    countdown = float(delay.params.get("seconds", DEFAULT_FAULT_SECONDS)) if delay else 0
    send_after = timezone.now() + timedelta(seconds=countdown) if countdown else None
    if send_after:
        UnionPayNotification.objects.filter(id=notification.id).update(send_after=send_after)
    ids = [notification.id]
    if _fault(FaultKind.NOTIFY_DUPLICATE, txn, *consume_order_ids):
        duplicate = UnionPayNotification.objects.create(
            txn=txn, back_url=txn.back_url, fields=fields, send_after=send_after
        )
        ids.append(duplicate.id)
    for notification_id in ids:
        transaction.on_commit(lambda notification_id=notification_id: _enqueue(notification_id, countdown))
    return notification


def _release_held(*, consume_id: int) -> None:
    """Out of order: a consume's held notifications go out once one of its refunds' notifications
    has been delivered (not merely created: under load a later task can overtake an earlier one)."""
    with transaction.atomic():
        ids = list(
            UnionPayNotification.objects.select_for_update(skip_locked=True)
            .filter(txn_id=consume_id, held=True, delivered_at__isnull=True)
            .values_list("id", flat=True)
        )
        UnionPayNotification.objects.filter(id__in=ids).update(held=False)
    for notification_id in ids:
        _enqueue(notification_id)


def unionpay_notification_deliver(*, notification_id: int) -> bool | float:
    """One delivery attempt. True when delivered (now or before) or never to be sent, False to
    retry, or the seconds to wait when a delay fault holds it back.

    UnionPay counts a notification delivered on HTTP 200 (or 302) within 10 s; the body is ignored.
    Each attempt is claimed first (compare-and-set on `attempts`), so the task and the sweep never
    send the same attempt twice.
    """
    notification = UnionPayNotification.objects.select_related("txn").filter(id=notification_id).first()
    if notification is None or notification.delivered_at is not None or notification.lost or notification.held:
        return True
    now = timezone.now()
    if notification.send_after is not None and now < notification.send_after:
        return (notification.send_after - now).total_seconds()
    claimed = UnionPayNotification.objects.filter(
        id=notification.id, delivered_at__isnull=True, attempts=notification.attempts
    ).update(attempts=F("attempts") + 1, last_attempt_at=now)
    if not claimed:  # another sender is on it right now
        return True
    form = unionpay_sign(dict(notification.fields))
    delivered = False
    try:
        response = requests.post(
            notification.back_url, data=form, timeout=NOTIFY_TIMEOUT_SECONDS, allow_redirects=False
        )
        delivered = response.status_code in (200, 302)
        result = f"HTTP {response.status_code}: {response.content[:100]!r}"
    except requests.RequestException as exc:
        result = f"{type(exc).__name__}: {exc}"
    changes = {"last_result": result[:300]}
    if delivered:
        changes["delivered_at"] = timezone.now()
    UnionPayNotification.objects.filter(id=notification.id).update(**changes)
    if not delivered:
        logger.info("sandbox unionpay notification %s to %s failed: %s", notification.id, notification.back_url, result)
    elif notification.txn.txn_type == UnionPayTxnType.REFUND:
        _release_held(consume_id=notification.txn.orig_id)
    return delivered


def unionpay_sandbox_sweep() -> dict[str, int]:
    """The safety net: fails front consumes past payTimeout, releases notifications held longer
    than OUT_OF_ORDER_HOLD, and sends those never attempted: delayed ones now due, and those
    whose task was lost."""
    now = timezone.now()
    expired = 0
    due = UnionPayTxn.objects.filter(
        status=UnionPayTxnStatus.PENDING, txn_type=UnionPayTxnType.CONSUME, pay_timeout__lte=now
    )
    for txn_id in due.values_list("id", flat=True)[:500]:
        with transaction.atomic():
            txn = _txn_lock(txn_id)
            if not txn.is_final:
                _complete(txn, succeed=False, code="01", message="交易超时", now=now)
                expired += 1
    released = UnionPayNotification.objects.filter(
        held=True, delivered_at__isnull=True, created_at__lte=now - OUT_OF_ORDER_HOLD
    ).update(held=False)
    lost = list(
        UnionPayNotification.objects.filter(delivered_at__isnull=True, attempts=0, lost=False, held=False)
        .filter(Q(send_after__isnull=True, created_at__lte=now - LOST_NOTIFICATION_AGE) | Q(send_after__lte=now))
        .values_list("id", flat=True)[:500]
    )
    for notification_id in lost:
        _enqueue(notification_id)
    return {"expired": expired, "released": released, "requeued": len(lost)}


# --- the reconciliation file -------------------------------------------------------------------


def _fee(amount: int) -> int:
    return int((Decimal(amount) * FEE_RATE).quantize(Decimal(1), rounding=ROUND_HALF_UP))


CANCEL = "31"  # 消费撤销: a consume reversed in full (paysys never asks for one; a bill fault shows one)
TXN_CODES = {UnionPayTxnType.CONSUME: "S22", UnionPayTxnType.REFUND: "S30", CANCEL: "S31"}  # [UNCONFIRMED values]


def _zm_values(txn: UnionPayTxn, *, amount: int, fee: int) -> list[str]:
    """One ZM line's 42 values for a settled consume, refund or cancel (PROVIDERS.md C5 field order)."""
    reversal = txn.txn_type != UnionPayTxnType.CONSUME  # the money goes back: C, the original is named
    orig = txn.orig if reversal else None
    net = -(amount - fee) if reversal else amount - fee
    values = [""] * len(proto.ZM_WIDTHS)
    values[0] = TXN_CODES[txn.txn_type]  # 交易代码
    values[1] = "00000000"  # 代理机构标识码
    values[2] = "00000000"  # 发送机构标识码
    values[3] = txn.trace_no
    values[4] = txn.trace_time
    values[5] = (orig or txn).acc_no
    values[6] = f"{amount:012d}"
    values[7] = "5411"
    values[8] = txn.channel_type or (orig.channel_type if orig else "") or "07"
    values[9] = txn.query_id
    values[10] = "00"
    values[11] = txn.order_id
    values[12] = "01"
    values[13] = orig.trace_no if orig else ""
    values[14] = orig.trace_time if orig else ""
    values[15] = ("C" if reversal else "D") + f"{fee:012d}"  # the merchant pays (D) or gets back (C) the fee
    values[16] = ("C" if reversal else "D") + f"{amount:012d}"
    values[19] = txn.txn_type
    values[20] = txn.txn_sub_type
    values[21] = txn.biz_type
    values[26] = orig.query_id if orig else ""
    values[27] = txn.merchant.mer_id
    values[32] = ("D" if net < 0 else "C") + f"{abs(net):012d}"
    values[40] = orig.order_id if orig else ""
    return values


def _cancel_of(txn: UnionPayTxn) -> UnionPayTxn:
    """The 消费撤销 (cancel) of a consume, as a ZM line would show it (never stored)."""
    at = txn.completed_at or timezone.now()
    return UnionPayTxn(
        merchant=txn.merchant, order_id=proto.random_digits(24), txn_time=proto.format_time(at), txn_type=CANCEL,
        txn_sub_type="00", channel_type=txn.channel_type, txn_amt=txn.txn_amt, orig=txn, acc_no=txn.acc_no,
        **_new_trace(at),
    )  # fmt: skip


def unionpay_bill(*, merchant: UnionPayMerchant, settle_date: date) -> tuple[str, str]:
    """(fileName, fileContent) of the day's reconciliation archive; UnionPayError 98 before the
    day has begun. Bill faults (missing, extra, altered line), per merId or orderId: a missing
    line drops the transaction; an altered one changes its amount or fee by params.delta fen
    (default 1), or for params.field `status` lists a consume as cancelled (消费撤销, txnType 31,
    its own orderId, the consume's in 原始交易订单号) instead of settled; an extra line is a consume
    nobody made (params.amount fen, default 100; params.order_id)."""
    today = timezone.now().astimezone(proto.UNIONPAY_TZ).date()
    if settle_date > today:
        raise UnionPayError("98", "文件不存在")
    txns = list(
        UnionPayTxn.objects.select_related("merchant", "orig")
        .filter(merchant=merchant, settle_date=settle_date, status=UnionPayTxnStatus.SUCCESS)
        .order_by("completed_at", "id")
    )
    entries = [(txn, txn.txn_amt, _fee(txn.txn_amt)) for txn in txns]
    for index, (txn, _amount, _fee_amount) in enumerate(entries):
        if fault_for(FaultKind.BILL_MISSING_LINE, merchant=merchant, order_id=txn.order_id):
            del entries[index]
            break
    for index, (txn, amount, fee) in enumerate(entries):
        fault = fault_for(FaultKind.BILL_ALTERED_LINE, merchant=merchant, order_id=txn.order_id)
        if fault is not None:
            delta = int(fault.params.get("delta", 1))
            field = fault.params.get("field") or "amount"
            if field == "fee":
                entries[index] = (txn, amount, fee + delta)
            elif field == "status" and txn.txn_type == UnionPayTxnType.CONSUME:
                entries[index] = (_cancel_of(txn), amount, fee)
            elif field == "amount":
                entries[index] = (txn, amount + delta, fee)
            break
    lines = [proto.zm_line(_zm_values(txn, amount=amount, fee=fee)) for txn, amount, fee in entries]
    extra = fault_for(FaultKind.BILL_EXTRA_LINE, merchant=merchant, order_id="")
    if extra is not None:
        amount = int(extra.params.get("amount", 100))
        phantom = UnionPayTxn(
            merchant=merchant,
            order_id=str(extra.params.get("order_id") or proto.random_digits(24)),
            txn_time=proto.format_time(timezone.now()),
            txn_type=UnionPayTxnType.CONSUME,
            txn_sub_type="01",
            channel_type="07",
            txn_amt=amount,
            acc_no=SANDBOX_ACC_NO,
            **_new_trace(timezone.now()),
        )
        lines.append(proto.zm_line(_zm_values(phantom, amount=amount, fee=_fee(amount))))
    return proto.bill_archive(settle_date=settle_date, mer_id=merchant.mer_id, zm_lines=lines)
