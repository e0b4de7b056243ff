"""Reads for the WeChat Pay sandbox's gateway, pages and console."""

from apps.sandbox.models import (
    WechatpayBill,
    WechatpayMerchant,
    WechatpayNotification,
    WechatpayRefund,
    WechatpayTransaction,
)


def wechatpay_merchant_get(*, mchid: str) -> WechatpayMerchant | None:
    return WechatpayMerchant.objects.filter(mchid=mchid).first()


def wechatpay_transaction_find(
    *, merchant: WechatpayMerchant, out_trade_no: str = "", transaction_id: str = ""
) -> WechatpayTransaction | None:
    """The merchant's order by WeChat's transaction_id (preferred) or the merchant's out_trade_no."""
    trades = WechatpayTransaction.objects.select_related("merchant").filter(merchant=merchant)
    if transaction_id:
        return trades.filter(transaction_id=transaction_id).first()
    if out_trade_no:
        return trades.filter(out_trade_no=out_trade_no).first()
    return None


def wechatpay_transaction_get_by_token(*, token: str) -> WechatpayTransaction | None:
    """By the pay page token (code_url, h5_url) or by the prepay_id (JSAPI)."""
    trades = WechatpayTransaction.objects.select_related("merchant")
    return trades.filter(pay_token=token).first() or trades.filter(prepay_id=token).first()


def wechatpay_refund_find(*, merchant: WechatpayMerchant, out_refund_no: str) -> WechatpayRefund | None:
    return (
        WechatpayRefund.objects.select_related("transaction__merchant")
        .filter(transaction__merchant=merchant, out_refund_no=out_refund_no)
        .first()
    )


def wechatpay_bill_get(*, merchant: WechatpayMerchant, token: str) -> WechatpayBill | None:
    return WechatpayBill.objects.filter(merchant=merchant, token=token).first() if token else None


def wechatpay_merchants_list() -> list[WechatpayMerchant]:
    return list(WechatpayMerchant.objects.order_by("-created_at"))


def wechatpay_transactions_recent(*, limit: int = 50) -> list[WechatpayTransaction]:
    return list(WechatpayTransaction.objects.select_related("merchant").order_by("-created_at", "-id")[:limit])


def wechatpay_notifications_for_transaction(*, trade: WechatpayTransaction) -> list[WechatpayNotification]:
    return list(trade.notifications.order_by("id"))
