"""Every write of the WeChat Pay sandbox: merchants, transactions, refunds, notifications, bills.

Lock order: the transaction row first (`_transaction_lock`), then its refunds. Notifications are
created in the same database transaction as the state change they announce and sent after
commit by `tasks.sandbox_wechatpay_notify`. Faults (apps.sandbox.faults) are consulted where
WeChat would misbehave: when a notification is created, when a refund is accepted, and when a
day's bill is published.
"""

import gzip
import logging
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import requests
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core import crypto
from apps.core.ids import random_token
from apps.sandbox import wechatpay_protocol as proto
from apps.sandbox.faults import fault_active, fault_take
from apps.sandbox.models import (
    FaultKind,
    WechatpayBill,
    WechatpayMerchant,
    WechatpayNotification,
    WechatpayRefund,
    WechatpayRefundStatus,
    WechatpayTradeState,
    WechatpayTransaction,
)

logger = logging.getLogger(__name__)

PROVIDER = "wechatpay"
DEFAULT_ORDER_LIFETIME = timedelta(hours=2)  # WeChat's default for an order without time_expire
NOTIFY_TIMEOUT_SECONDS = 5
LOST_TASK_AGE = timedelta(minutes=2)
OUT_OF_ORDER_HOLD = timedelta(minutes=10)  # a held payment notification goes out at the latest then


class WechatpayApiError(Exception):
    """An answer other than 2xx, with WeChat's `code` and `message` (and HTTP status)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


# --- merchants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WechatpayMerchantCreated:
    """A new sandbox merchant and what paysys configures: the merchant private key is shown once."""

    merchant: WechatpayMerchant
    merchant_private_key: str | None

    def credentials(self) -> dict:
        """A paysys channel account's credentials for this merchant (public-key mode)."""
        merchant = self.merchant
        return {
            "mchid": merchant.mchid,
            "appid": merchant.appid,
            "merchant_private_key": self.merchant_private_key,
            "merchant_cert_serial_no": merchant.merchant_cert_serial_no,
            "apiv3_key": merchant.apiv3_key,
            "platform_public_key": merchant.platform_public_key_pem,
            "platform_public_key_id": merchant.public_key_id,
        }


def wechatpay_merchant_create(
    *, name: str = "", merchant_public_key_pem: str | None = None
) -> WechatpayMerchantCreated:
    """Registers a merchant with a fresh platform key pair, API v3 key and (unless given) merchant key."""
    merchant_private_key = None
    if merchant_public_key_pem is None:
        merchant_key = crypto.rsa_generate()
        merchant_private_key = crypto.private_key_pem(merchant_key)
        merchant_public_key_pem = crypto.public_key_pem(merchant_key)
    else:
        crypto.load_public_key(merchant_public_key_pem)
    platform_key = crypto.rsa_generate()
    alphabet = string.ascii_letters + string.digits
    for _ in range(5):
        try:
            with transaction.atomic():
                merchant = WechatpayMerchant.objects.create(
                    mchid="19" + proto.random_digits(8),
                    appid="wx" + secrets.token_hex(8),
                    name=name,
                    merchant_public_key_pem=merchant_public_key_pem,
                    merchant_cert_serial_no=secrets.token_hex(20).upper(),
                    platform_public_key_pem=crypto.public_key_pem(platform_key),
                    platform_private_key_pem=crypto.private_key_pem(platform_key),
                    public_key_id="PUB_KEY_ID_01" + proto.random_digits(10) + secrets.token_hex(8).upper(),
                    apiv3_key="".join(secrets.choice(alphabet) for _ in range(32)),
                )
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover
        raise RuntimeError("could not allocate a sandbox mchid")
    return WechatpayMerchantCreated(merchant=merchant, merchant_private_key=merchant_private_key)


# --- documents (what the API answers and notifications carry) ------------------------------------


def transaction_document(trade: WechatpayTransaction) -> dict:
    paid = trade.trade_state in (WechatpayTradeState.SUCCESS, WechatpayTradeState.REFUND)
    document = {
        "appid": trade.appid,
        "mchid": trade.merchant.mchid,
        "out_trade_no": trade.out_trade_no,
        "trade_type": trade.trade_type,
        "trade_state": trade.trade_state,
        "trade_state_desc": TRADE_STATE_DESC[trade.trade_state],
        "attach": trade.attach,
        "amount": {"total": trade.total, "currency": trade.currency},
    }
    if paid:
        document.update(
            {
                "transaction_id": trade.transaction_id,
                "bank_type": trade.bank_type,
                "success_time": proto.format_time(trade.success_time),
                "payer": {"openid": trade.payer_openid},
                "amount": {
                    "total": trade.total,
                    "payer_total": trade.total,
                    "currency": trade.currency,
                    "payer_currency": trade.currency,
                },
            }
        )
    return document


TRADE_STATE_DESC = {
    WechatpayTradeState.NOTPAY: "订单未支付",
    WechatpayTradeState.SUCCESS: "支付成功",
    WechatpayTradeState.REFUND: "转入退款",
    WechatpayTradeState.CLOSED: "订单已关闭",
    WechatpayTradeState.PAYERROR: "支付失败",
}


def refund_document(refund: WechatpayRefund) -> dict:
    trade = refund.transaction
    return {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": trade.transaction_id,
        "out_trade_no": trade.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "success_time": proto.format_time(refund.success_time) if refund.success_time else None,
        "create_time": proto.format_time(refund.created_at),
        "status": refund.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": trade.total,
            "refund": refund.refund,
            "payer_total": trade.total,
            "payer_refund": refund.refund,
            "settlement_total": trade.total,
            "settlement_refund": refund.refund,
            "discount_refund": 0,
            "currency": trade.currency,
            "from": [],
        },
        "promotion_detail": [],
    }


def _refund_resource(refund: WechatpayRefund) -> dict:
    trade = refund.transaction
    return {
        "mchid": trade.merchant.mchid,
        "out_trade_no": trade.out_trade_no,
        "transaction_id": trade.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status,
        "success_time": proto.format_time(refund.success_time),
        "user_received_account": "支付用户零钱",
        "amount": {"total": trade.total, "refund": refund.refund, "payer_total": trade.total,
                   "payer_refund": refund.refund},
    }  # fmt: skip


# --- transactions ------------------------------------------------------------------------------


def _transaction_lock(transaction_id: int) -> WechatpayTransaction:
    return WechatpayTransaction.objects.select_for_update().select_related("merchant").get(id=transaction_id)


def wechatpay_transaction_create(
    *,
    merchant: WechatpayMerchant,
    trade_type: str,
    out_trade_no: str,
    description: str,
    total: int,
    currency: str,
    notify_url: str,
    time_expire: datetime | None = None,
    attach: str = "",
    payer_openid: str = "",
    payer_client_ip: str = "",
) -> WechatpayTransaction:
    """Places an order; the same order again (same type and amount) gives the same prepay."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return WechatpayTransaction.objects.create(
                merchant=merchant,
                appid=merchant.appid,
                out_trade_no=out_trade_no,
                transaction_id=proto.new_transaction_id(now),
                trade_type=trade_type,
                description=description,
                attach=attach,
                total=total,
                currency=currency,
                notify_url=notify_url,
                payer_openid=payer_openid or "o" + random_token(27),
                payer_client_ip=payer_client_ip,
                prepay_id=proto.new_prepay_id(now),
                pay_token=random_token(32),
                expires_at=time_expire or now + DEFAULT_ORDER_LIFETIME,
            )
    except IntegrityError:
        pass
    with transaction.atomic():
        trade = WechatpayTransaction.objects.select_for_update().get(merchant=merchant, out_trade_no=out_trade_no)
        _close_if_expired(trade)
        if trade.trade_state in (WechatpayTradeState.SUCCESS, WechatpayTradeState.REFUND):
            raise WechatpayApiError(400, "ORDERPAID", "该订单已支付")
        if trade.trade_state == WechatpayTradeState.CLOSED:
            raise WechatpayApiError(400, "ORDER_CLOSED", "订单已关闭")
        if trade.total != total or trade.trade_type != trade_type:
            raise WechatpayApiError(400, "INVALID_REQUEST", "201 商户订单号重复")
        return trade


def _close_if_expired(trade: WechatpayTransaction) -> bool:
    now = timezone.now()
    if trade.trade_state != WechatpayTradeState.NOTPAY or now < trade.expires_at:
        return False
    trade.trade_state = WechatpayTradeState.CLOSED
    trade.closed_at = now
    trade.save(update_fields=["trade_state", "closed_at"])
    return True


def wechatpay_transaction_refresh(*, trade: WechatpayTransaction) -> WechatpayTransaction:
    """The order as of now: unpaid past its time_expire means closed."""
    with transaction.atomic():
        locked = _transaction_lock(trade.id)
        _close_if_expired(locked)
        return locked


def wechatpay_transaction_settle(*, trade: WechatpayTransaction, succeed: bool) -> tuple[WechatpayTransaction, bool]:
    """The payer paid (`succeed`) or the payment failed (PAYERROR). Returns (order, whether it changed).

    Idempotent: a final order is left as it is. Only success is notified (TRANSACTION.SUCCESS).
    """
    with transaction.atomic():
        locked = _transaction_lock(trade.id)
        if _close_if_expired(locked) or locked.is_final:
            return locked, False
        now = timezone.now()
        if succeed:
            locked.trade_state = WechatpayTradeState.SUCCESS
            locked.success_time = now
            locked.bank_type = "OTHERS"
        else:
            locked.trade_state = WechatpayTradeState.PAYERROR
        locked.save(update_fields=["trade_state", "success_time", "bank_type"])
        if succeed:
            _payment_notification_create(locked)
        return locked, True


def wechatpay_transaction_close(*, trade: WechatpayTransaction) -> WechatpayTransaction:
    """Closes an unpaid order (closing it again is fine); a paid one cannot be closed."""
    with transaction.atomic():
        locked = _transaction_lock(trade.id)
        _close_if_expired(locked)
        if locked.trade_state in (WechatpayTradeState.SUCCESS, WechatpayTradeState.REFUND):
            raise WechatpayApiError(400, "ORDERPAID", "订单已支付")
        if locked.trade_state != WechatpayTradeState.CLOSED:
            locked.trade_state = WechatpayTradeState.CLOSED
            locked.closed_at = timezone.now()
            locked.save(update_fields=["trade_state", "closed_at"])
        return locked


# --- refunds -----------------------------------------------------------------------------------


def wechatpay_refund_create(
    *, trade: WechatpayTransaction, out_refund_no: str, refund: int, total: int, reason: str = "", notify_url: str = ""
) -> tuple[WechatpayRefund, bool]:
    """Accepts a refund (PROCESSING); it succeeds shortly after (REFUND.SUCCESS). Returns (refund, created).

    The same out_refund_no again answers the existing refund.
    """
    with transaction.atomic():
        locked = _transaction_lock(trade.id)
        existing = locked.refunds.filter(out_refund_no=out_refund_no).first()
        if existing is not None:
            if existing.refund != refund:
                raise WechatpayApiError(400, "INVALID_REQUEST", "退款单号重复，退款金额不一致")
            return existing, False
        if locked.trade_state not in (WechatpayTradeState.SUCCESS, WechatpayTradeState.REFUND):
            raise WechatpayApiError(400, "INVALID_REQUEST", "订单状态不正确，无法退款")
        if total != locked.total:
            raise WechatpayApiError(400, "PARAM_ERROR", "订单金额与原订单金额不一致")
        accepted = sum(r.refund for r in locked.refunds.exclude(status=WechatpayRefundStatus.CLOSED))
        if refund < 1 or accepted + refund > locked.total:
            raise WechatpayApiError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        never_notifies = fault_take(
            provider=PROVIDER,
            kind=FaultKind.REFUND_NEVER_NOTIFIES,
            merchant_ref=locked.merchant.mchid,
            out_trade_no=locked.out_trade_no,
        )
        created = WechatpayRefund.objects.create(
            transaction=locked,
            out_refund_no=out_refund_no,
            refund_id=proto.new_refund_id(timezone.now()),
            refund=refund,
            reason=reason,
            notify_url=notify_url,
            notify=never_notifies is None,
        )
        from apps.sandbox import tasks  # tasks imports this module

        transaction.on_commit(lambda: tasks.sandbox_wechatpay_refund_complete.apply_async((created.id,), countdown=1))
        return created, True


def wechatpay_refund_complete(*, refund_id: int) -> bool:
    """The bank has returned the money: PROCESSING -> SUCCESS, notified (REFUND.SUCCESS). Idempotent."""
    refund = WechatpayRefund.objects.filter(id=refund_id).first()
    if refund is None:
        return False
    with transaction.atomic():
        trade = _transaction_lock(refund.transaction_id)
        refund = WechatpayRefund.objects.select_for_update().get(id=refund_id)
        if refund.status != WechatpayRefundStatus.PROCESSING:
            return False
        refund.status = WechatpayRefundStatus.SUCCESS
        refund.success_time = timezone.now()
        refund.save(update_fields=["status", "success_time"])
        WechatpayTransaction.objects.filter(id=trade.id).update(
            refunded=F("refunded") + refund.refund, trade_state=WechatpayTradeState.REFUND
        )
        refund.transaction = trade
        if refund.notify and refund.notify_url:
            _notification_create(
                trade,
                refund=refund,
                event_type="REFUND.SUCCESS",
                summary="退款成功",
                original_type="refund",
                resource=_refund_resource(refund),
                notify_url=refund.notify_url,
            )
        return True


# --- notifications -----------------------------------------------------------------------------


def _payment_notification_create(trade: WechatpayTransaction) -> WechatpayNotification | None:
    resource = transaction_document(trade)
    mchid = trade.merchant.mchid
    differs = fault_take(
        provider=PROVIDER, kind=FaultKind.NOTIFY_AMOUNT_DIFFERS, merchant_ref=mchid, out_trade_no=trade.out_trade_no
    )
    if differs is not None:
        delta = int(differs.params.get("delta", 1))
        resource["amount"] = {**resource["amount"], "total": trade.total + delta, "payer_total": trade.total + delta}
    return _notification_create(
        trade,
        event_type="TRANSACTION.SUCCESS",
        summary="支付成功",
        original_type="transaction",
        resource=resource,
        notify_url=trade.notify_url,
        payment=True,
    )


def _notification_create(
    trade: WechatpayTransaction,
    *,
    event_type: str,
    summary: str,
    original_type: str,
    resource: dict,
    notify_url: str,
    refund: WechatpayRefund | None = None,
    payment: bool = False,
) -> WechatpayNotification:
    """Records a notification, applying the notification faults, and sends it after commit."""
    mchid, out_trade_no = trade.merchant.mchid, trade.out_trade_no
    now = timezone.now()

    def take(kind):
        return fault_take(provider=PROVIDER, kind=kind, merchant_ref=mchid, out_trade_no=out_trade_no)

    lost = take(FaultKind.NOTIFY_LOST) is not None
    delay = None if lost else take(FaultKind.NOTIFY_DELAY)
    held = payment and not lost and take(FaultKind.NOTIFY_OUT_OF_ORDER) is not None
    duplicate = not lost and take(FaultKind.NOTIFY_DUPLICATE) is not None
    deliver_after = None
    if delay is not None:
        deliver_after = now + timedelta(seconds=float(delay.params.get("seconds", 5)))
    elif held:
        deliver_after = now + OUT_OF_ORDER_HOLD  # released earlier by the refund's notification
    notification = WechatpayNotification.objects.create(
        transaction=trade,
        refund=refund,
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        summary=summary,
        original_type=original_type,
        resource=resource,
        notify_url=notify_url,
        deliver_after=deliver_after,
        held=held,
        lost=lost,
        duplicate=duplicate,
    )
    if not (lost or held):
        _enqueue_on_commit(notification)
    return notification


def _enqueue_on_commit(notification: WechatpayNotification) -> None:
    from apps.sandbox import tasks  # tasks imports this module

    countdown = 0.0
    if notification.deliver_after is not None:
        countdown = max(0.0, (notification.deliver_after - timezone.now()).total_seconds())
    transaction.on_commit(
        lambda: tasks.sandbox_wechatpay_notify.apply_async((notification.id,), countdown=countdown or None)
    )


def wechatpay_notification_wait(*, notification_id: int) -> float:
    """Seconds until a (delayed) notification is due; 0 when due now."""
    notification = WechatpayNotification.objects.filter(id=notification_id).first()
    if notification is None or notification.deliver_after is None:
        return 0.0
    return max(0.0, (notification.deliver_after - timezone.now()).total_seconds())


def _post(notification: WechatpayNotification, merchant: WechatpayMerchant) -> tuple[bool, str]:
    envelope = proto.notification_envelope(
        event_id=notification.event_id,
        create_time=proto.format_time(notification.created_at),
        event_type=notification.event_type,
        summary=notification.summary,
        original_type=notification.original_type,
        resource=notification.resource,
        apiv3_key=merchant.apiv3_key,
    )
    body = proto.json_body(envelope)
    headers = proto.signature_headers(
        body, private_key_pem=merchant.platform_private_key_pem, serial=merchant.public_key_id
    )
    headers["Content-Type"] = "application/json"
    try:
        response = requests.post(notification.notify_url, data=body, headers=headers, timeout=NOTIFY_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return 200 <= response.status_code < 300, f"HTTP {response.status_code}: {response.content[:100]!r}"


def wechatpay_notification_deliver(*, notification_id: int) -> bool:
    """One delivery attempt. True when delivered (now or before) or never to be sent; False to retry.

    WeChat counts a notification delivered on HTTP 200/204. A `duplicate` one is sent twice.
    Delivering a refund's notification releases a payment notification held back out of order.
    """
    notification = (
        WechatpayNotification.objects.select_related("transaction__merchant").filter(id=notification_id).first()
    )
    if notification is None or notification.delivered_at is not None or notification.lost or notification.held:
        return True
    merchant = notification.transaction.merchant
    now = timezone.now()
    delivered, result = _post(notification, merchant)
    attempts = 1
    if delivered and notification.duplicate:
        _post(notification, merchant)
        attempts += 1
    changes = {"attempts": F("attempts") + attempts, "last_attempt_at": now, "last_result": result[:300]}
    if delivered:
        changes["delivered_at"] = now
    WechatpayNotification.objects.filter(id=notification.id).update(**changes)
    if not delivered:
        logger.info("sandbox wechatpay notification %s not acknowledged: %s", notification.event_id, result)
    elif notification.refund_id is not None:
        _release_held(transaction_id=notification.transaction_id)
    return delivered


def _release_held(*, transaction_id: int | None = None, due_before: datetime | None = None) -> int:
    held = WechatpayNotification.objects.filter(held=True, lost=False)
    if transaction_id is not None:
        held = held.filter(transaction_id=transaction_id)
    if due_before is not None:
        held = held.filter(deliver_after__lte=due_before)
    released = 0
    with transaction.atomic():
        for notification in held.select_for_update():
            notification.held = False
            notification.deliver_after = None
            notification.save(update_fields=["held", "deliver_after"])
            _enqueue_on_commit(notification)
            released += 1
    return released


# --- bills -------------------------------------------------------------------------------------


def _day_bounds(bill_date: date) -> tuple[datetime, datetime]:
    start = datetime.combine(bill_date, datetime.min.time(), tzinfo=proto.WECHAT_TZ)
    return start, start + timedelta(days=1)


def _local(value: datetime) -> str:
    return value.astimezone(proto.WECHAT_TZ).strftime(proto.BILL_TIME_FORMAT)


def _payment_row(trade: WechatpayTransaction) -> dict[str, str]:
    amount = proto.yuan(trade.total)
    return {
        "交易时间": _local(trade.success_time), "公众账号ID": trade.appid, "商户号": trade.merchant.mchid,
        "特约商户号": "0", "微信订单号": trade.transaction_id, "商户订单号": trade.out_trade_no,
        "用户标识": trade.payer_openid, "交易类型": trade.trade_type, "交易状态": "SUCCESS",
        "付款银行": trade.bank_type or "OTHERS", "货币种类": trade.currency, "应结订单金额": amount,
        "代金券金额": "0.00", "微信退款单号": "0", "商户退款单号": "0", "退款金额": "0.00", "充值券退款金额": "0.00",
        "商品名称": trade.description, "商户数据包": trade.attach, "手续费": f"{proto.fee_of(trade.total):.5f}",
        "费率": "0.60%", "订单金额": amount, "申请退款金额": "0.00",
    }  # fmt: skip


def _refund_row(refund: WechatpayRefund) -> dict[str, str]:
    trade = refund.transaction
    amount = proto.yuan(refund.refund)
    return {
        "交易时间": _local(refund.success_time), "公众账号ID": trade.appid, "商户号": trade.merchant.mchid,
        "特约商户号": "0", "微信订单号": trade.transaction_id, "商户订单号": trade.out_trade_no,
        "用户标识": trade.payer_openid, "交易类型": trade.trade_type, "交易状态": "REFUND",
        "付款银行": trade.bank_type or "OTHERS", "货币种类": trade.currency, "应结订单金额": "0.00",
        "代金券金额": "0.00", "微信退款单号": refund.refund_id, "商户退款单号": refund.out_refund_no,
        "退款金额": amount, "充值券退款金额": "0.00", "退款类型": "ORIGINAL", "退款状态": "SUCCESS",
        "商品名称": trade.description, "商户数据包": trade.attach, "手续费": f"{-proto.fee_of(refund.refund):.5f}",
        "费率": "0.60%", "订单金额": "0.00", "申请退款金额": amount,
    }  # fmt: skip


def _bill_fault_target(rows: list[dict[str, str]], kind: str, mchid: str):
    """(row index, fault) for the first payment row a bill fault applies to, consumed once; else None.

    A fault scoped to one payment (or naming `params.out_trade_no`) hits that payment's line; a
    merchant-wide one hits the first payment line.
    """
    for index, row in enumerate(rows):
        if row["交易状态"] != "SUCCESS":
            continue
        out_trade_no = row["商户订单号"]
        if not fault_active(provider=PROVIDER, kind=kind, merchant_ref=mchid, out_trade_no=out_trade_no):
            continue
        fault = fault_take(provider=PROVIDER, kind=kind, merchant_ref=mchid, out_trade_no=out_trade_no)
        if fault is None:
            continue
        wanted = str(fault.params.get("out_trade_no") or "")
        if wanted and wanted != out_trade_no:
            wanted_index = next((i for i, r in enumerate(rows) if r["商户订单号"] == wanted), None)
            return (wanted_index, fault) if wanted_index is not None else None
        return index, fault
    return None


def _apply_bill_faults(rows: list[dict[str, str]], merchant: WechatpayMerchant, day_start: datetime) -> None:
    """Bill faults, per mchid or out_trade_no: an altered payment line (params.field `amount` or
    `fee`, changed by params.delta fen, default 1; `status`: REVOKED), a missing line, an extra
    payment nobody made (params.amount fen, default 100; params.out_trade_no)."""
    mchid = merchant.mchid
    altered = _bill_fault_target(rows, FaultKind.BILL_ALTERED_LINE, mchid)
    if altered is not None:
        index, fault = altered
        field = str(fault.params.get("field") or "amount")
        delta = Decimal(int(fault.params.get("delta", 1))).scaleb(-2)  # fen
        row = dict(rows[index])
        if field == "fee":
            row["手续费"] = f"{Decimal(row['手续费']) + delta:.5f}"
        elif field == "status":
            row["交易状态"] = "REVOKED"
        else:
            changed = f"{Decimal(row['应结订单金额']) + delta:.2f}"
            row["应结订单金额"] = row["订单金额"] = changed
        rows[index] = row
    missing = _bill_fault_target(rows, FaultKind.BILL_MISSING_LINE, mchid)
    if missing is not None:
        del rows[missing[0]]
    extra = fault_take(provider=PROVIDER, kind=FaultKind.BILL_EXTRA_LINE, merchant_ref=mchid)
    if extra is not None:
        fen = int(extra.params.get("amount", 100))
        amount = proto.yuan(fen)
        moment = day_start + timedelta(hours=12)
        rows.append(
            {
                "交易时间": _local(moment), "公众账号ID": merchant.appid, "商户号": mchid, "特约商户号": "0",
                "微信订单号": proto.new_transaction_id(moment),
                "商户订单号": str(extra.params.get("out_trade_no") or "extra" + proto.random_digits(10)),
                "用户标识": "o" + random_token(27), "交易类型": "NATIVE", "交易状态": "SUCCESS", "付款银行": "OTHERS",
                "货币种类": "CNY", "应结订单金额": amount, "代金券金额": "0.00", "微信退款单号": "0",
                "商户退款单号": "0", "退款金额": "0.00", "充值券退款金额": "0.00", "商品名称": "sandbox extra line",
                "手续费": f"{proto.fee_of(fen):.5f}", "费率": "0.60%", "订单金额": amount, "申请退款金额": "0.00",
            }
        )  # fmt: skip


def wechatpay_bill_publish(*, merchant: WechatpayMerchant, bill_date: date, bill_type: str = "ALL") -> WechatpayBill:
    """Builds the day's ALL trade bill from the sandbox's records (bill faults applied) and stores it.

    Payments are listed on the day they succeeded, refunds on the day they succeeded, both in
    China time. WechatpayApiError NO_STATEMENT_EXIST for a day without any, or in the future.
    """
    start, end = _day_bounds(bill_date)
    if start > timezone.now():
        raise WechatpayApiError(400, "NO_STATEMENT_EXIST", "账单日期不能是未来日期")
    trades = WechatpayTransaction.objects.select_related("merchant").filter(
        merchant=merchant, success_time__gte=start, success_time__lt=end
    )
    refunds = WechatpayRefund.objects.select_related("transaction__merchant").filter(
        transaction__merchant=merchant, status=WechatpayRefundStatus.SUCCESS, success_time__gte=start,
        success_time__lt=end,
    )  # fmt: skip
    events = [(t.success_time, t.id, _payment_row(t)) for t in trades]
    events += [(r.success_time, r.id, _refund_row(r)) for r in refunds]
    rows = [row for _, _, row in sorted(events, key=lambda e: (e[0], e[1]))]
    _apply_bill_faults(rows, merchant, start)
    if not rows:
        raise WechatpayApiError(400, "NO_STATEMENT_EXIST", "该日期没有账单")
    text = proto.bill_text(rows).encode("utf-8")
    return WechatpayBill.objects.create(
        merchant=merchant,
        bill_date=bill_date,
        bill_type=bill_type,
        token=random_token(40),
        content=gzip.compress(text, mtime=0),
        sha1=proto.sha1_hex(text),
    )


# --- the sweep ---------------------------------------------------------------------------------


def wechatpay_sandbox_sweep() -> dict[str, int]:
    """The safety net: closes expired unpaid orders, completes refunds whose task was lost,
    releases held (out-of-order) notifications past their hold, and re-sends notifications
    whose task was lost."""
    now = timezone.now()
    expired = 0
    due = WechatpayTransaction.objects.filter(trade_state=WechatpayTradeState.NOTPAY, expires_at__lte=now)
    for trade_id in due.values_list("id", flat=True)[:500]:
        with transaction.atomic():
            expired += _close_if_expired(_transaction_lock(trade_id))
    stuck_refunds = list(
        WechatpayRefund.objects.filter(
            status=WechatpayRefundStatus.PROCESSING, created_at__lte=now - LOST_TASK_AGE
        ).values_list("id", flat=True)[:500]
    )
    for refund_id in stuck_refunds:
        wechatpay_refund_complete(refund_id=refund_id)
    released = _release_held(due_before=now)
    lost = list(
        WechatpayNotification.objects.filter(
            delivered_at__isnull=True, attempts=0, lost=False, held=False, created_at__lte=now - LOST_TASK_AGE
        )
        .filter(Q(deliver_after__isnull=True) | Q(deliver_after__lte=now))
        .values_list("id", flat=True)[:500]
    )
    from apps.sandbox import tasks

    for notification_id in lost:
        tasks.sandbox_wechatpay_notify.delay(notification_id)
    return {"expired": expired, "refunds_completed": len(stuck_refunds), "released": released, "requeued": len(lost)}
