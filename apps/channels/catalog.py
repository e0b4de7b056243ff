"""Ping++ channel codes (payment methods) and the provider that serves each."""

METHOD_PROVIDERS: dict[str, str] = {
    "alipay_qr": "alipay",
    "alipay_wap": "alipay",
    "alipay_pc_direct": "alipay",
    "wx_pub_qr": "wechatpay",
    "wx_pub": "wechatpay",
    "wx_wap": "wechatpay",
    "upacp_pc": "unionpay",
    "upacp_wap": "unionpay",
    # Card payments where the card's bank decides: any acquirer whose account lists the bank
    # (routing's BIN table and policies); "unionpay" is the usual acquirer network.
    "bank_card": "unionpay",
}


def is_known_method(method: str) -> bool:
    return method in METHOD_PROVIDERS
