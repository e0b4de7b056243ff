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
}


def is_known_method(method: str) -> bool:
    return method in METHOD_PROVIDERS
