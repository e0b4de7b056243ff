"""The sandbox's own records: what each provider keeps on its side of the wire.

One module per provider (plus the injected faults); nothing here refers to paysys's models.
"""

from apps.sandbox.models.alipay import (
    AlipayApp,
    AlipayNotification,
    AlipayNotificationHold,
    AlipayProductCode,
    AlipayRefund,
    AlipayTrade,
    AlipayTradeStatus,
)
from apps.sandbox.models.faults import FaultKind, SandboxFault
from apps.sandbox.models.unionpay import (
    UnionPayAuthority,
    UnionPayMerchant,
    UnionPayNotification,
    UnionPayTxn,
    UnionPayTxnStatus,
    UnionPayTxnType,
)
from apps.sandbox.models.wechatpay import (
    WechatpayBill,
    WechatpayMerchant,
    WechatpayNotification,
    WechatpayRefund,
    WechatpayRefundStatus,
    WechatpayTradeState,
    WechatpayTradeType,
    WechatpayTransaction,
)

__all__ = ["AlipayApp", "AlipayNotification", "AlipayTrade", "AlipayTradeStatus", "FaultKind", "SandboxFault"]
__all__ += ["AlipayNotificationHold", "AlipayProductCode", "AlipayRefund"]
__all__ += [
    "WechatpayBill",
    "WechatpayMerchant",
    "WechatpayNotification",
    "WechatpayRefund",
    "WechatpayRefundStatus",
    "WechatpayTradeState",
    "WechatpayTradeType",
    "WechatpayTransaction",
]
__all__ += [
    "UnionPayAuthority",
    "UnionPayMerchant",
    "UnionPayNotification",
    "UnionPayTxn",
    "UnionPayTxnStatus",
    "UnionPayTxnType",
]
