"""Every write the sandbox makes: apps, trades and their state changes, notifications.

Lock order: one trade row at a time (`_trade_lock`); notifications are created in the same
transaction as the state change they announce and sent after commit.
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
from apps.core.ids import random_token
from apps.sandbox import alipay_protocol as proto
from apps.sandbox.exceptions import business_error
from apps.sandbox.models import AlipayApp, AlipayNotification, AlipayTrade, AlipayTradeStatus

logger = logging.getLogger(__name__)

DEFAULT_TRADE_LIFETIME = timedelta(days=15)  # Alipay's default timeout_express
NOTIFY_TIMEOUT_SECONDS = 10
LOST_NOTIFICATION_AGE = timedelta(minutes=2)


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
) -> AlipayTrade:
    """`alipay.trade.precreate`: a new trade, or the same one again for the same order and amount."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return AlipayTrade.objects.create(
                app=app,
                out_trade_no=out_trade_no,
                trade_no=proto.new_trade_no(now),
                total_amount=total_amount,
                subject=subject,
                body=body,
                notify_url=notify_url,
                pay_token=random_token(32),
                expires_at=_expires_at(now, timeout_minutes, time_expire),
            )
    except IntegrityError:
        pass  # the order exists: answer as Alipay does for a repeated precreate
    with transaction.atomic():
        trade = AlipayTrade.objects.select_for_update().get(app=app, out_trade_no=out_trade_no)
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


# --- notifications -----------------------------------------------------------------------------


def notification_fields(trade: AlipayTrade, *, notify_id: str, now: datetime) -> dict[str, str]:
    """The fields of Alipay's `trade_status_sync` notification for the trade's current state.

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
    if trade.status == AlipayTradeStatus.TRADE_SUCCESS:
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
    elif trade.status == AlipayTradeStatus.TRADE_CLOSED:
        fields["gmt_close"] = proto.format_time(trade.closed_at)
    return {k: v for k, v in fields.items() if v}


def _notification_create(trade: AlipayTrade) -> AlipayNotification | None:
    """Records the notification for the trade's new state and sends it after commit."""
    if not trade.notify_url:
        return None
    notify_id = secrets.token_hex(16)
    notification = AlipayNotification.objects.create(
        trade=trade,
        notify_id=notify_id,
        trade_status=trade.status,
        notify_url=trade.notify_url,
        fields=notification_fields(trade, notify_id=notify_id, now=timezone.now()),
    )
    from apps.sandbox import tasks  # tasks imports this module

    transaction.on_commit(lambda: tasks.sandbox_alipay_notify.delay(notification.id))
    return notification


def alipay_notification_deliver(*, notification_id: int) -> bool:
    """One delivery attempt. True when delivered (now or before), False when it should be retried.

    Alipay counts a notification delivered only when the answer body is exactly `success`.
    """
    notification = AlipayNotification.objects.select_related("trade__app").filter(id=notification_id).first()
    if notification is None or notification.delivered_at is not None:
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
            delivered_at__isnull=True, attempts=0, created_at__lte=now - LOST_NOTIFICATION_AGE
        ).values_list("id", flat=True)[:500]
    )
    from apps.sandbox import tasks

    for notification_id in lost:
        tasks.sandbox_alipay_notify.delay(notification_id)
    return {"expired": expired, "requeued": len(lost)}
