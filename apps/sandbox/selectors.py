"""Reads for the sandbox's gateway, pages and console."""

from apps.sandbox.faults import ENABLED_FAULTS_JSON_SQL
from apps.sandbox.models import AlipayApp, AlipayNotification, AlipayRefund, AlipayTrade, SandboxFault


def alipay_app_get(*, app_id: str) -> AlipayApp | None:
    try:
        return AlipayApp.objects.get(app_id=app_id)  # unique: no ordering needed
    except AlipayApp.DoesNotExist:
        return None


_APP_WITH_FAULTS_SQL = (
    f"SELECT a.*, ({ENABLED_FAULTS_JSON_SQL}) AS enabled_faults FROM {AlipayApp._meta.db_table} a WHERE a.app_id = %s"
)


def alipay_app_with_faults(*, app_id: str, provider: str) -> tuple[AlipayApp | None, list]:
    """The app and the provider's enabled faults (the rows `faults.armed_kinds` takes) in one
    round trip: every gateway request needs both."""
    app = next(iter(AlipayApp.objects.raw(_APP_WITH_FAULTS_SQL, [provider, app_id])), None)
    return app, (app.enabled_faults if app is not None else [])


def alipay_trade_find(*, app: AlipayApp, out_trade_no: str = "", trade_no: str = "") -> AlipayTrade | None:
    """The app's trade by Alipay's trade_no (preferred) or the merchant's out_trade_no."""
    trades = AlipayTrade.objects.filter(app=app)
    if trade_no:
        trades = trades.filter(trade_no=trade_no)
        if out_trade_no:
            trades = trades.filter(out_trade_no=out_trade_no)
    elif out_trade_no:
        trades = trades.filter(out_trade_no=out_trade_no)
    else:
        return None
    return trades.first()


def alipay_trade_get_by_token(*, pay_token: str) -> AlipayTrade | None:
    return AlipayTrade.objects.select_related("app").filter(pay_token=pay_token).first()


def alipay_apps_list() -> list[AlipayApp]:
    return list(AlipayApp.objects.order_by("-created_at"))


def alipay_trades_recent(*, limit: int = 50) -> list[AlipayTrade]:
    return list(AlipayTrade.objects.select_related("app").order_by("-created_at", "-id")[:limit])


def alipay_notifications_for_trade(*, trade: AlipayTrade) -> list[AlipayNotification]:
    return list(trade.notifications.order_by("id"))


def alipay_refund_find(*, trade: AlipayTrade, out_request_no: str) -> AlipayRefund | None:
    return AlipayRefund.objects.filter(trade=trade, out_request_no=out_request_no).first()


def sandbox_faults_recent(*, limit: int = 200) -> list[SandboxFault]:
    return list(SandboxFault.objects.order_by("-enabled", "-created_at", "-id")[:limit])
