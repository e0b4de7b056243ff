from apps.channels.adapters.base import ChannelAdapter


def adapter_class(provider: str) -> type[ChannelAdapter]:
    """The adapter class for a provider code (imported lazily: each pulls in its SDK)."""
    if provider == "alipay":
        from apps.channels.adapters.alipay import AlipayAdapter

        return AlipayAdapter
    raise LookupError(f"no adapter for provider {provider!r}")
