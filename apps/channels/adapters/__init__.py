from apps.channels.adapters.base import ChannelAdapter


def adapter_class(provider: str) -> type[ChannelAdapter]:
    """The adapter class for a provider code (imported lazily: each pulls in its SDK)."""
    if provider == "alipay":
        from apps.channels.adapters.alipay import AlipayAdapter

        return AlipayAdapter
    if provider == "wechatpay":
        from apps.channels.adapters.wechatpay import WechatpayAdapter

        return WechatpayAdapter
    if provider == "unionpay":
        from apps.channels.adapters.unionpay import UnionPayAdapter

        return UnionPayAdapter
    raise LookupError(f"no adapter for provider {provider!r}")
