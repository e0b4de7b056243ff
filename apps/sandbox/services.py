"""Every write of the Alipay sandbox: apps, trades and their state changes, refunds, notifications.

Lock order: one trade row at a time (`_trade_lock`), then its refunds; notifications are created
in the same transaction as the state change they announce and sent after commit. Notification
faults (apps.sandbox.faults) are consulted when a notification is created.
"""

import logging
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

import requests
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.core import crypto
from apps.core.db import insert_unless_exists
from apps.core.ids import random_token
from apps.sandbox import alipay_protocol as proto
from apps.sandbox import selectors
from apps.sandbox.exceptions import business_error
from apps.sandbox.faults import armed_kinds, fault_kinds_armed, fault_take
from apps.sandbox.models import (
    AlipayApp,
    AlipayNotification,
    AlipayNotificationHold,
    AlipayProductCode,
    AlipayRefund,
    AlipayTrade,
    AlipayTradeStatus,
    FaultKind,
    SandboxFault,
)

logger = logging.getLogger(__name__)

DEFAULT_TRADE_LIFETIME = timedelta(days=15)  # Alipay's default timeout_express
NOTIFY_TIMEOUT_SECONDS = 10
LOST_NOTIFICATION_AGE = timedelta(minutes=2)
OUT_OF_ORDER_HOLD = timedelta(minutes=10)  # a held payment notification goes out at the latest then
PROVIDER = "alipay"


def alipay_fault_take(
    kind: str,
    *,
    app: AlipayApp,
    out_trade_no: str = "",
    operation: str | None = None,
    armed: frozenset[str] | None = None,
) -> SandboxFault | None:
    return fault_take(
        provider=PROVIDER,
        kind=kind,
        merchant_ref=app.app_id,
        out_trade_no=out_trade_no,
        operation=operation,
        armed=armed,
    )


def alipay_fault_kinds_armed(*, app: AlipayApp, out_trade_no: str = "") -> frozenset[str]:
    return fault_kinds_armed(provider=PROVIDER, merchant_ref=app.app_id, out_trade_no=out_trade_no)


def alipay_app_and_armed(*, app_id: str, out_trade_no: str) -> tuple[AlipayApp | None, frozenset[str]]:
    """A gateway request's app (None when unknown) and the fault kinds armed for its payment: one read."""
    app, enabled = selectors.alipay_app_with_faults(app_id=app_id, provider=PROVIDER) if app_id else (None, [])
    if app is None:
        return None, frozenset()
    return app, armed_kinds(enabled, merchant_ref=app.app_id, out_trade_no=out_trade_no)


# --- apps --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlipayAppCreated:
    """A new sandbox app and what the merchant configures: the app private key is never stored."""

    app: AlipayApp
    app_private_key: str | None  # None when the merchant registered its own public key
    alipay_public_key: str

    @property
    def app_id(self) -> str:
        return self.app.app_id

    def credentials(self) -> dict:
        """What a paysys channel account's credentials hold (keys: app_id, app_private_key, alipay_public_key)."""
        return {
            "app_id": self.app.app_id,
            "app_private_key": self.app_private_key,
            "alipay_public_key": self.alipay_public_key,
        }


def alipay_app_create(*, name: str = "", app_public_key_pem: str | None = None) -> AlipayAppCreated:
    """Registers an Alipay app with a fresh "Alipay" key pair.

    Without `app_public_key_pem` a merchant key pair is generated too, and its private half is
    returned once (as Alipay's key tool does on the merchant's machine).
    """
    app_private_key = None
    if app_public_key_pem is None:
        merchant_key = crypto.rsa_generate()
        app_private_key = crypto.private_key_pem(merchant_key)
        app_public_key_pem = crypto.public_key_pem(merchant_key)
    else:
        crypto.load_public_key(app_public_key_pem)  # refuse a malformed key now, not at first call
    alipay_key = crypto.rsa_generate()
    for _ in range(5):
        try:
            with transaction.atomic():
                app = AlipayApp.objects.create(
                    app_id="2021" + proto.random_digits(12),
                    name=name,
                    seller_id="2088" + proto.random_digits(12),
                    app_public_key_pem=app_public_key_pem,
                    alipay_public_key_pem=crypto.public_key_pem(alipay_key),
                    alipay_private_key_pem=crypto.private_key_pem(alipay_key),
                )
            break
        except IntegrityError:  # an app_id collision: draw again
            continue
    else:  # pragma: no cover - 10^12 ids
        raise RuntimeError("could not allocate a sandbox app_id")
    return AlipayAppCreated(app=app, app_private_key=app_private_key, alipay_public_key=app.alipay_public_key_pem)


# --- trades ------------------------------------------------------------------------------------


def _trade_lock(trade_id: int) -> AlipayTrade:
    return AlipayTrade.objects.select_for_update().select_related("app").get(id=trade_id)


def _expires_at(now: datetime, timeout_minutes: int | None, time_expire: datetime | None) -> datetime:
    if time_expire is not None:
        return time_expire
    if timeout_minutes == -1:  # "1c": the end of the current day, Alipay's local time
        local = now.astimezone(proto.ALIPAY_TZ)
        return datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=proto.ALIPAY_TZ)
    if timeout_minutes:
        return now + timedelta(minutes=timeout_minutes)
    return now + DEFAULT_TRADE_LIFETIME


def alipay_trade_precreate(
    *,
    app: AlipayApp,
    out_trade_no: str,
    total_amount: Decimal,
    subject: str,
    body: str = "",
    notify_url: str = "",
    timeout_minutes: int | None = None,
    time_expire: datetime | None = None,
    product_code: str = AlipayProductCode.FACE_TO_FACE_PAYMENT,
    return_url: str = "",
) -> AlipayTrade:
    """`alipay.trade.precreate`: a new trade, or the same one again for the same order and amount.

    The cashier of `page.pay` / `wap.pay` creates its trade through here too (then marks it seen).
    """
    now = timezone.now()
    trade = AlipayTrade(
        app=app,
        out_trade_no=out_trade_no,
        trade_no=proto.new_trade_no(now),
        total_amount=total_amount,
        subject=subject,
        body=body,
        notify_url=notify_url,
        return_url=return_url,
        product_code=product_code,
        pay_token=random_token(32),
        expires_at=_expires_at(now, timeout_minutes, time_expire),
    )
    if insert_unless_exists(trade):
        return trade
    # The order exists: answer as Alipay does for a repeated precreate.
    with transaction.atomic():
        trade = AlipayTrade.objects.select_for_update().select_related("app").get(app=app, out_trade_no=out_trade_no)
        _close_if_expired(trade)
        if trade.status == AlipayTradeStatus.TRADE_SUCCESS:
            raise business_error("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if trade.status == AlipayTradeStatus.TRADE_CLOSED:
            raise business_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if trade.total_amount != total_amount:
            raise business_error("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        return trade


def _mark_scanned(trade: AlipayTrade, now: datetime) -> None:
    if trade.scanned:
        return
    trade.scanned = True
    trade.scanned_at = now
    trade.buyer_user_id = "2088" + proto.random_digits(12)
    trade.buyer_logon_id = "".join(secrets.choice(string.ascii_lowercase) for _ in range(3)) + "***@sandbox.com"


def _close_if_expired(trade: AlipayTrade) -> bool:
    """Closes a locked, unpaid trade whose time is up (notifying only if a payer ever saw it)."""
    now = timezone.now()
    if trade.status != AlipayTradeStatus.WAIT_BUYER_PAY or trade.expires_at is None or now < trade.expires_at:
        return False
    trade.status = AlipayTradeStatus.TRADE_CLOSED
    trade.closed_at = now
    trade.save(update_fields=["status", "closed_at"])
    if trade.scanned:
        _notification_create(trade)
    return True


def alipay_trade_refresh(*, trade: AlipayTrade) -> AlipayTrade:
    """The trade as of now: an unpaid trade past its expiry is closed first."""
    with transaction.atomic():
        locked = _trade_lock(trade.id)
        _close_if_expired(locked)
        return locked


def alipay_trade_scan(*, trade: AlipayTrade) -> AlipayTrade:
    """The payer opened the pay page: from now on the trade exists for query and close."""
    with transaction.atomic():
        locked = _trade_lock(trade.id)
        if not _close_if_expired(locked) and not locked.scanned:
            _mark_scanned(locked, timezone.now())
            locked.save(update_fields=["scanned", "scanned_at", "buyer_user_id", "buyer_logon_id"])
        return locked


def alipay_trade_settle(*, trade: AlipayTrade, succeed: bool) -> tuple[AlipayTrade, bool]:
    """The payer paid (`succeed`) or gave up. Returns (trade, whether it changed).

    Idempotent: a final trade is left as it is. Settling counts as a scan.
    """
    with transaction.atomic():
        locked = _trade_lock(trade.id)
        now = timezone.now()
        if not locked.scanned:
            _mark_scanned(locked, now)
            locked.save(update_fields=["scanned", "scanned_at", "buyer_user_id", "buyer_logon_id"])
        if _close_if_expired(locked) or locked.is_final:
            return locked, False
        if succeed:
            locked.status = AlipayTradeStatus.TRADE_SUCCESS
            locked.paid_at = now
        else:
            locked.status = AlipayTradeStatus.TRADE_CLOSED
            locked.closed_at = now
        locked.save(update_fields=["status", "paid_at", "closed_at"])
        _notification_create(locked)
        return locked, True


def alipay_trade_close(*, trade: AlipayTrade) -> AlipayTrade:
    """`alipay.trade.close`: closes an unpaid trade; closing a closed one again is a success."""
    with transaction.atomic():
        locked = _trade_lock(trade.id)
        if not locked.scanned:
            raise business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        _close_if_expired(locked)
        if locked.status == AlipayTradeStatus.TRADE_SUCCESS:
            raise business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if locked.status == AlipayTradeStatus.WAIT_BUYER_PAY:
            locked.status = AlipayTradeStatus.TRADE_CLOSED
            locked.closed_at = timezone.now()
            locked.save(update_fields=["status", "closed_at"])
            _notification_create(locked)
        return locked


def alipay_trade_cashier_open(*, trade: AlipayTrade) -> AlipayTrade:
    """The payer reached the cashier of `page.pay` / `wap.pay`: the trade exists from now on."""
    return alipay_trade_scan(trade=trade)


# --- refunds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlipayRefundOutcome:
    trade: AlipayTrade
    refund: AlipayRefund
    fund_change: bool  # money moved in this call (False: a repeat of an earlier out_request_no)


def alipay_trade_refund(
    *, trade: AlipayTrade, out_request_no: str, refund_amount: Decimal, refund_reason: str = ""
) -> AlipayRefundOutcome:
    """`alipay.trade.refund`: partial and multiple refunds, keyed by out_request_no.

    Synchronous as Alipay's: money moves in this call. A repeat of an out_request_no with the
    same amount answers the earlier refund (fund_change N); with another amount it is a
    discordant request. The cumulative refund never exceeds the paid amount; a trade refunded in
    full becomes TRADE_CLOSED. Each refund is notified (TRADE_SUCCESS or TRADE_CLOSED with
    refund_fee, gmt_refund and out_biz_no) unless REFUND_NEVER_NOTIFIES fires.
    """
    with transaction.atomic():
        locked = _trade_lock(trade.id)
        if not locked.scanned:
            raise business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        existing = AlipayRefund.objects.filter(trade=locked, out_request_no=out_request_no).first()
        if existing is not None:
            if existing.refund_amount != refund_amount:
                raise business_error("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return AlipayRefundOutcome(trade=locked, refund=existing, fund_change=False)
        if locked.paid_at is None:
            raise business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if locked.refund_fee + refund_amount > locked.total_amount:
            raise business_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        now = timezone.now()
        refund = AlipayRefund.objects.create(
            trade=locked,
            out_request_no=out_request_no,
            refund_amount=refund_amount,
            refund_reason=refund_reason[:256],
            refunded_at=now,
        )
        AlipayTrade.objects.filter(id=locked.id).update(refund_fee=F("refund_fee") + refund_amount)
        locked.refresh_from_db(fields=["refund_fee"])
        if locked.refund_fee == locked.total_amount:
            locked.status = AlipayTradeStatus.TRADE_CLOSED
            locked.closed_at = now
            locked.save(update_fields=["status", "closed_at"])
        if not alipay_fault_take(FaultKind.REFUND_NEVER_NOTIFIES, app=locked.app, out_trade_no=locked.out_trade_no):
            _notification_create(locked, refund=refund)
        return AlipayRefundOutcome(trade=locked, refund=refund, fund_change=True)


# --- notifications -----------------------------------------------------------------------------


def notification_fields(
    trade: AlipayTrade, *, notify_id: str, now: datetime, refund: AlipayRefund | None = None
) -> dict[str, str]:
    """The fields of Alipay's `trade_status_sync` notification for the trade's current state.

    A refund is notified with the trade's status (TRADE_SUCCESS after a partial refund,
    TRADE_CLOSED after a full one) plus `refund_fee` (cumulative), `gmt_refund` and `out_biz_no`.
    Empty values are left out: python-alipay-sdk's verify() does not drop them, so a field sent
    empty would make its signature disagree with Alipay's rule.
    """
    app = trade.app
    amount = proto.format_amount(trade.total_amount)
    fields = {
        "notify_time": proto.format_time(now),
        "notify_type": "trade_status_sync",
        "notify_id": notify_id,
        "app_id": app.app_id,
        "auth_app_id": app.app_id,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "buyer_id": trade.buyer_user_id,
        "buyer_logon_id": trade.buyer_logon_id,
        "seller_id": app.seller_id,
        "trade_status": trade.status,
        "total_amount": amount,
        "subject": trade.subject,
        "body": trade.body,
        "gmt_create": proto.format_time(trade.created_at),
    }
    if trade.paid_at is not None:
        fields.update(
            {
                "receipt_amount": amount,
                "invoice_amount": amount,
                "buyer_pay_amount": amount,
                "point_amount": "0.00",
                "gmt_payment": proto.format_time(trade.paid_at),
                "fund_bill_list": proto.json_text([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}]),
            }
        )
    if trade.status == AlipayTradeStatus.TRADE_CLOSED:
        fields["gmt_close"] = proto.format_time(trade.closed_at)
    if refund is not None:
        fields["out_biz_no"] = refund.out_request_no
        fields["refund_fee"] = proto.format_amount(trade.refund_fee)
        fields["gmt_refund"] = proto.format_time(refund.refunded_at)
    return {k: v for k, v in fields.items() if v}


AMOUNT_FIELDS = ("total_amount", "receipt_amount", "invoice_amount", "buyer_pay_amount", "refund_fee")


def _shift_amounts(fields: dict[str, str], delta_minor: int) -> dict[str, str]:
    """NOTIFY_AMOUNT_DIFFERS: every amount of the notification moved by `delta_minor` fen (signed)."""
    delta = Decimal(delta_minor).scaleb(-2)
    return {
        k: proto.format_amount(Decimal(v) + delta) if k in AMOUNT_FIELDS and k in fields else v
        for k, v in fields.items()
    }


def _notification_create(trade: AlipayTrade, *, refund: AlipayRefund | None = None) -> AlipayNotification | None:
    """Records the notification for the trade's new state (or a refund) and sends it after commit.

    Faults, per app or per out_trade_no: NOTIFY_LOST (recorded, never sent), NOTIFY_OUT_OF_ORDER
    (a payment notification held until the trade's next notification, a refund's, has been sent),
    NOTIFY_AMOUNT_DIFFERS (params.delta fen, signed like any other), NOTIFY_DELAY (params.seconds
    countdown), NOTIFY_DUPLICATE (delivered twice, same notify_id).
    """
    if not trade.notify_url:
        return None
    app = trade.app
    notify_id = secrets.token_hex(16)
    fields = notification_fields(trade, notify_id=notify_id, now=timezone.now(), refund=refund)
    hold = AlipayNotificationHold.NONE
    armed = alipay_fault_kinds_armed(app=app, out_trade_no=trade.out_trade_no)
    if alipay_fault_take(FaultKind.NOTIFY_LOST, app=app, out_trade_no=trade.out_trade_no, armed=armed):
        hold = AlipayNotificationHold.LOST
    elif (
        refund is None
        and trade.status == AlipayTradeStatus.TRADE_SUCCESS
        and alipay_fault_take(FaultKind.NOTIFY_OUT_OF_ORDER, app=app, out_trade_no=trade.out_trade_no, armed=armed)
    ):
        hold = AlipayNotificationHold.OUT_OF_ORDER
    differs = alipay_fault_take(FaultKind.NOTIFY_AMOUNT_DIFFERS, app=app, out_trade_no=trade.out_trade_no, armed=armed)
    if differs is not None:
        fields = _shift_amounts(fields, int((differs.params or {}).get("delta", 1)))
    notification = AlipayNotification.objects.create(
        trade=trade,
        notify_id=notify_id,
        trade_status=trade.status,
        notify_url=trade.notify_url,
        out_biz_no=refund.out_request_no if refund else "",
        hold=hold,
        fields=fields,
    )
    if hold:
        return notification
    delay = alipay_fault_take(FaultKind.NOTIFY_DELAY, app=app, out_trade_no=trade.out_trade_no, armed=armed)
    countdown = float((delay.params or {}).get("seconds", 10)) if delay else 0
    duplicate = alipay_fault_take(FaultKind.NOTIFY_DUPLICATE, app=app, out_trade_no=trade.out_trade_no, armed=armed)
    from apps.sandbox import tasks  # tasks imports this module

    def send():
        options = {"countdown": countdown} if countdown else {}
        tasks.sandbox_alipay_notify.apply_async(args=[notification.id], **options)
        if duplicate is not None:
            tasks.sandbox_alipay_notify.apply_async(args=[notification.id], kwargs={"duplicate": True}, **options)

    transaction.on_commit(send)
    return notification


def _release_held(*, trade_id: int, before_id: int | None = None) -> int:
    """Sends the out-of-order notifications of a trade held before `before_id` (or all of them)."""
    held = AlipayNotification.objects.filter(trade_id=trade_id, hold=AlipayNotificationHold.OUT_OF_ORDER)
    if before_id is not None:
        held = held.filter(id__lt=before_id)
    ids = list(held.values_list("id", flat=True))
    if not ids:
        return 0
    AlipayNotification.objects.filter(id__in=ids).update(hold=AlipayNotificationHold.NONE)
    from apps.sandbox import tasks

    for notification_id in ids:
        tasks.sandbox_alipay_notify.delay(notification_id)
    return len(ids)


def alipay_notification_deliver(*, notification_id: int, duplicate: bool = False) -> bool:
    """One delivery attempt. True when delivered (now or before), False when it should be retried.

    Alipay counts a notification delivered only when the answer body is exactly `success`. A held
    notification is not sent (True: nothing to retry). `duplicate` sends a delivered one again.
    After the attempt, payment notifications held "out of order" behind this one are released.
    """
    notification = AlipayNotification.objects.select_related("trade__app").filter(id=notification_id).first()
    if notification is None or notification.hold:
        return True
    if notification.delivered_at is not None and not duplicate:
        return True
    now = timezone.now()
    fields = dict(notification.fields, notify_time=proto.format_time(now))
    form = proto.notification_form(fields, notification.trade.app.alipay_private_key_pem)
    delivered = False
    try:
        response = requests.post(notification.notify_url, data=form, timeout=NOTIFY_TIMEOUT_SECONDS)
        delivered = response.status_code == 200 and response.content == b"success"
        result = f"HTTP {response.status_code}: {response.content[:100]!r}"
    except requests.RequestException as exc:
        result = f"{type(exc).__name__}: {exc}"
    changes = {"attempts": F("attempts") + 1, "last_attempt_at": now, "last_result": result[:300]}
    if delivered:
        changes["delivered_at"] = now
    AlipayNotification.objects.filter(id=notification.id).update(**changes)
    _release_held(trade_id=notification.trade_id, before_id=notification.id)
    if not delivered:
        logger.info(
            "sandbox alipay notification %s to %s not acknowledged: %s",
            notification.notify_id,
            notification.notify_url,
            result,
        )
    return delivered


def alipay_sandbox_sweep() -> dict[str, int]:
    """The safety net: closes unpaid trades past their expiry and re-sends notifications whose
    task was lost (never attempted, older than a couple of minutes)."""
    now = timezone.now()
    expired = 0
    due = AlipayTrade.objects.filter(status=AlipayTradeStatus.WAIT_BUYER_PAY, expires_at__lte=now)
    for trade_id in due.values_list("id", flat=True)[:500]:
        with transaction.atomic():
            expired += _close_if_expired(_trade_lock(trade_id))
    lost = list(
        AlipayNotification.objects.filter(
            delivered_at__isnull=True, attempts=0, hold="", created_at__lte=now - LOST_NOTIFICATION_AGE
        ).values_list("id", flat=True)[:500]
    )
    overdue = AlipayNotification.objects.filter(
        hold=AlipayNotificationHold.OUT_OF_ORDER, created_at__lte=now - OUT_OF_ORDER_HOLD
    )
    for trade_id in set(overdue.values_list("trade_id", flat=True)[:500]):
        _release_held(trade_id=trade_id)
    from apps.sandbox import tasks

    for notification_id in lost:
        tasks.sandbox_alipay_notify.delay(notification_id)
    return {"expired": expired, "requeued": len(lost)}


# --- faults ------------------------------------------------------------------------------------


def sandbox_fault_disable(*, fault_id: int) -> bool:
    """Turns one injected fault off (the console's Disable); False when there was none enabled."""
    return SandboxFault.objects.filter(pk=fault_id, enabled=True).update(enabled=False) == 1
