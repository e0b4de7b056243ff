"""The fault run's view of each provider's sandbox: how a payer pays there, which faults the
provider can exhibit through the pay core, and what the sandbox itself holds afterwards.

Each `Sandbox` speaks for one sandbox account. Its faults are merchant-wide rows armed one firing
at a time (`remaining` += 1) as the run goes, or rows scoped to one payment that fire once.
What a sandbox holds is read from its own tables and put in the run's terms (`Held`,
`HeldRefund`), so the checks compare every provider's record with paysys's in the same way.
"""

import abc
import threading
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import requests
from django.db.models import F
from django.utils import timezone

from apps.sandbox.faults import fault_set
from apps.sandbox.models import (
    AlipayNotification,
    AlipayRefund,
    AlipayTrade,
    AlipayTradeStatus,
    FaultKind,
    SandboxFault,
    UnionPayNotification,
    UnionPayTxn,
    UnionPayTxnStatus,
    UnionPayTxnType,
    WechatpayNotification,
    WechatpayRefund,
    WechatpayRefundStatus,
    WechatpayTradeState,
    WechatpayTransaction,
)

FAULT_SECONDS = 4.0  # how late a "timeout" fault answers: beyond the run's channel timeout (2 s)
PAYER_TIMEOUT = 30


@dataclass(frozen=True)
class Held:
    """One payment as its provider holds it."""

    paid: bool
    ended_unpaid: bool  # closed, failed or expired: nothing can pay it any more
    trade_no: str
    refunded: Decimal  # yuan, refunds that have returned the money
    known: bool = True  # the provider has heard of it (an Alipay precreate only once scanned)


@dataclass(frozen=True)
class HeldRefund:
    charge_id: str
    amount: Decimal
    settled: bool  # the money has gone back (not merely accepted)


@dataclass(frozen=True)
class FaultPlan:
    """A merchant-wide fault armed before the provider's job number n when n % every == offset."""

    kind: str
    every: int
    offset: int
    params: dict = field(default_factory=dict)
    label: str = ""  # tells two plans of one kind apart (a 5xx on create, another on refund)

    @property
    def key(self) -> str:
        return f"{self.kind}[{self.label}]" if self.label else self.kind


NOTIFY_FAULTS = (  # charge jobs: the payment notification misbehaves
    FaultPlan(FaultKind.NOTIFY_LOST, 10, 1),
    FaultPlan(FaultKind.NOTIFY_DELAY, 10, 2, {"seconds": 4}),
    FaultPlan(FaultKind.NOTIFY_DUPLICATE, 10, 4),
)
CREATE_FAULTS = (  # charge jobs of providers paysys calls to create a payment
    FaultPlan(FaultKind.CREATE_TIMEOUT_PAID, 20, 5, {"seconds": FAULT_SECONDS}),
    FaultPlan(FaultKind.TIMEOUT_CREATE, 40, 26, {"seconds": FAULT_SECONDS}),
)
REFUND_FAULTS = (  # refund jobs
    FaultPlan(FaultKind.TIMEOUT_REFUND, 8, 1, {"seconds": FAULT_SECONDS}),
    FaultPlan(FaultKind.REFUND_NEVER_NOTIFIES, 6, 2),
    FaultPlan(FaultKind.NOTIFY_LOST, 10, 3),
    FaultPlan(FaultKind.NOTIFY_DUPLICATE, 10, 5),
    FaultPlan(FaultKind.NOTIFY_DELAY, 10, 7, {"seconds": 4}),
    FaultPlan(FaultKind.TIMEOUT_QUERY, 10, 9, {"seconds": FAULT_SECONDS}),
)
REFUND_5XX = FaultPlan(FaultKind.ERROR_5XX, 12, 5, {"operations": ["refund"]}, label="refund")


class Sandbox(abc.ABC):
    provider: str
    channel: str
    extra: dict = {}
    closes = True  # the provider can close an unpaid payment: reverse, and pay racing reverse
    charge_faults: tuple[FaultPlan, ...] = ()
    refund_faults: tuple[FaultPlan, ...] = ()

    def __init__(self, account, merchant_ref: str):
        self.account = account
        self.merchant_ref = merchant_ref
        self.fault_ids: dict[str, int] = {}
        self.armed = Counter()  # per planned fault, from the driver's threads
        self.lock = threading.Lock()

    # --- faults -----------------------------------------------------------------------------

    def install_faults(self) -> None:
        """One merchant-wide row per planned fault, armed zero times yet."""
        for plan in (*self.charge_faults, *self.refund_faults):
            if plan.key not in self.fault_ids:
                fault = fault_set(provider=self.provider, kind=plan.kind, merchant_ref=self.merchant_ref,
                                  params=plan.params, remaining=0)  # fmt: skip
                self.fault_ids[plan.key] = fault.pk

    def arm_due(self, plans: tuple[FaultPlan, ...], n: int) -> None:
        for plan in plans:
            if n % plan.every == plan.offset:
                SandboxFault.objects.filter(pk=self.fault_ids[plan.key]).update(remaining=F("remaining") + 1)
                with self.lock:
                    self.armed[plan.key] += 1

    def arm_for(self, kind: str, charge_id: str, params: dict | None = None) -> None:
        """A fault for one payment only (fires once)."""
        fault_set(provider=self.provider, kind=kind, merchant_ref=self.merchant_ref, out_trade_no=self.scope(charge_id),
                  params=params or {}, remaining=1)  # fmt: skip

    def fault_report(self) -> dict[str, tuple[int, int]]:
        """(armed, fired) per planned fault, and per kind of payment-scoped fault."""
        faults = list(SandboxFault.objects.filter(provider=self.provider, merchant_ref=self.merchant_ref))
        fired = {f.pk: f.fired for f in faults}
        report = {key: (self.armed[key], fired[pk]) for key, pk in self.fault_ids.items()}
        for kind in sorted({f.kind for f in faults if f.out_trade_no}):
            ours = [f for f in faults if f.out_trade_no and f.kind == kind]
            report[f"{kind} (one payment)"] = (len(ours), sum(f.fired for f in ours))
        return report

    def fired_for(self, kind: str) -> list[str]:
        """The charges whose payment-scoped fault of this kind fired."""
        scopes = SandboxFault.objects.filter(
            provider=self.provider, merchant_ref=self.merchant_ref, kind=kind, fired__gt=0
        ).exclude(out_trade_no="")
        return [self.charge_id(scope) for scope in scopes.values_list("out_trade_no", flat=True)]

    def scope(self, charge_id: str) -> str:
        """How the provider names the payment (a fault's `out_trade_no`)."""
        return charge_id

    def charge_id(self, scope: str) -> str:
        return scope

    # --- the payer --------------------------------------------------------------------------

    def open(self, credential) -> None:
        """The payer opens the payment (scans the code, posts the form) and does not pay yet."""
        requests.get(credential, timeout=PAYER_TIMEOUT).raise_for_status()

    def pay(self, credential) -> int:
        return requests.post(credential, data={"result": "success"}, timeout=PAYER_TIMEOUT).status_code

    # --- what the sandbox holds -------------------------------------------------------------

    @abc.abstractmethod
    def payments(self) -> dict[str, Held]:
        """What the sandbox holds about each payment, by charge id."""

    @abc.abstractmethod
    def refunds(self) -> dict[str, HeldRefund]:
        """What the sandbox holds about each refund, by refund id."""

    @abc.abstractmethod
    def notified_out_of_order(self) -> set[str]:
        """Charges whose payment notification was delivered after one of their refunds' notifications."""


def _after_a_refund(payments: list[tuple], refunds: list[tuple]) -> set:
    """Keys (payments) whose first delivered payment notification went out after the first
    delivered notification of one of their refunds; rows are (key, delivered_at or None)."""

    def first(rows):
        earliest = {}
        for key, at in rows:
            if at is not None and (key not in earliest or at < earliest[key]):
                earliest[key] = at
        return earliest

    paid, refunded = first(payments), first(refunds)
    return {key for key, at in paid.items() if key in refunded and at > refunded[key]}


class AlipaySandbox(Sandbox):
    """Alipay: precreate (QR); refunds are synchronous (the answer settles them), and a trade's
    notifications after a refund carry its new refunded total."""

    provider = "alipay"
    channel = "alipay_qr"
    charge_faults = (
        *NOTIFY_FAULTS,
        *CREATE_FAULTS,
        FaultPlan(FaultKind.ERROR_5XX, 40, 6, {"operations": ["alipay.trade.precreate"], "status": 502}, "create"),
    )
    refund_faults = REFUND_FAULTS

    def payments(self) -> dict[str, Held]:
        return {
            t.out_trade_no: Held(
                paid=t.paid_at is not None,
                ended_unpaid=t.paid_at is None and t.status == AlipayTradeStatus.TRADE_CLOSED,
                trade_no=t.trade_no,
                refunded=t.refund_fee,
                known=t.scanned,
            )
            for t in AlipayTrade.objects.filter(app__app_id=self.merchant_ref)
        }

    def refunds(self) -> dict[str, HeldRefund]:
        return {
            r.out_request_no: HeldRefund(charge_id=r.trade.out_trade_no, amount=r.refund_amount, settled=True)
            for r in AlipayRefund.objects.filter(trade__app__app_id=self.merchant_ref).select_related("trade")
        }

    def notified_out_of_order(self) -> set[str]:
        rows = AlipayNotification.objects.filter(trade__app__app_id=self.merchant_ref).values_list(
            "trade__out_trade_no", "out_biz_no", "trade_status", "delivered_at"
        )
        payments = [(no, at) for no, biz, status, at in rows if not biz and status == AlipayTradeStatus.TRADE_SUCCESS]
        return _after_a_refund(payments, [(no, at) for no, biz, _, at in rows if biz])


class WechatpaySandbox(Sandbox):
    """WeChat Pay v3, native (QR): refunds are accepted (PROCESSING), then notified."""

    provider = "wechatpay"
    channel = "wx_pub_qr"
    extra = {"product_id": "fault-run"}
    charge_faults = (
        *NOTIFY_FAULTS,
        *CREATE_FAULTS,
        FaultPlan(FaultKind.ERROR_5XX, 40, 6, {"operations": ["create"]}, "create"),
    )
    refund_faults = (*REFUND_FAULTS, REFUND_5XX)

    def payments(self) -> dict[str, Held]:
        refunded = Counter()
        for out_trade_no, amount in WechatpayRefund.objects.filter(
            transaction__merchant__mchid=self.merchant_ref, status=WechatpayRefundStatus.SUCCESS
        ).values_list("transaction__out_trade_no", "refund"):
            refunded[out_trade_no] += amount
        now = timezone.now()
        held = {}
        for t in WechatpayTransaction.objects.filter(merchant__mchid=self.merchant_ref):
            paid = t.trade_state in (WechatpayTradeState.SUCCESS, WechatpayTradeState.REFUND)
            expired = t.trade_state == WechatpayTradeState.NOTPAY and t.expires_at <= now
            held[t.out_trade_no] = Held(
                paid=paid,
                ended_unpaid=expired or t.trade_state in (WechatpayTradeState.CLOSED, WechatpayTradeState.PAYERROR),
                trade_no=t.transaction_id,
                refunded=Decimal(refunded[t.out_trade_no]).scaleb(-2),
            )
        return held

    def refunds(self) -> dict[str, HeldRefund]:
        return {
            r.out_refund_no: HeldRefund(
                charge_id=r.transaction.out_trade_no,
                amount=Decimal(r.refund).scaleb(-2),
                settled=r.status == WechatpayRefundStatus.SUCCESS,
            )
            for r in WechatpayRefund.objects.filter(transaction__merchant__mchid=self.merchant_ref).select_related(
                "transaction"
            )
        }

    def notified_out_of_order(self) -> set[str]:
        rows = WechatpayNotification.objects.filter(transaction__merchant__mchid=self.merchant_ref).values_list(
            "transaction__out_trade_no", "refund_id", "delivered_at"
        )
        payments = [(no, at) for no, refund, at in rows if refund is None]
        return _after_a_refund(payments, [(no, at) for no, refund, at in rows if refund is not None])


class UnionpaySandbox(Sandbox):
    """UnionPay ACP, PC gateway. paysys makes no create call (the payer's browser posts the signed
    form to frontTransReq.do), so create faults never reach the pay core; there is no close (a
    consume dies at payTimeout), so no reverse; refunds are accepted, then notified."""

    provider = "unionpay"
    channel = "upacp_pc"
    extra = {"result_url": "https://shop.example/result"}
    closes = False
    charge_faults = (
        *NOTIFY_FAULTS,
        FaultPlan(FaultKind.TIMEOUT_QUERY, 20, 5, {"seconds": FAULT_SECONDS}),
        FaultPlan(FaultKind.ERROR_5XX, 40, 6, {"operations": ["query"]}, "query"),
    )
    refund_faults = (*REFUND_FAULTS, REFUND_5XX)

    def scope(self, charge_id: str) -> str:
        return charge_id.removeprefix("ch_")  # the orderId

    def charge_id(self, scope: str) -> str:
        return f"ch_{scope}"

    def _front(self, credential: dict) -> str:
        """The payer's browser posts the form; the cashier's address (its pay URL) comes back."""
        form = {k: v for k, v in credential.items() if k != "channel_url"}
        front = requests.post(credential["channel_url"], data=form, headers={"Accept": "application/json"},
                              timeout=PAYER_TIMEOUT)  # fmt: skip
        front.raise_for_status()
        return front.json()["pay_url"]

    def open(self, credential) -> None:
        self._front(credential)

    def pay(self, credential) -> int:
        pay_url = self._front(credential)  # the same form again is the same consume
        return requests.post(pay_url, data={"result": "success"}, timeout=PAYER_TIMEOUT).status_code

    def _txns(self):
        return UnionPayTxn.objects.filter(merchant__mer_id=self.merchant_ref)

    def payments(self) -> dict[str, Held]:
        refunded = Counter()
        for consume, amount in (
            self._txns()
            .filter(txn_type=UnionPayTxnType.REFUND, status=UnionPayTxnStatus.SUCCESS)
            .values_list("orig__order_id", "txn_amt")
        ):
            refunded[consume] += amount
        now = timezone.now()
        held = {}
        for txn in self._txns().filter(txn_type=UnionPayTxnType.CONSUME):
            timed_out = (
                txn.status == UnionPayTxnStatus.PENDING and txn.pay_timeout is not None and txn.pay_timeout <= now
            )
            held[self.charge_id(txn.order_id)] = Held(
                paid=txn.status == UnionPayTxnStatus.SUCCESS,
                ended_unpaid=timed_out or txn.status == UnionPayTxnStatus.FAILED,
                trade_no=txn.query_id,
                refunded=Decimal(refunded[txn.order_id]).scaleb(-2),
            )
        return held

    def refunds(self) -> dict[str, HeldRefund]:
        return {
            f"re_{txn.order_id}": HeldRefund(
                charge_id=self.charge_id(txn.orig.order_id),
                amount=Decimal(txn.txn_amt).scaleb(-2),
                settled=txn.status == UnionPayTxnStatus.SUCCESS,
            )
            for txn in self._txns().filter(txn_type=UnionPayTxnType.REFUND).select_related("orig")
        }

    def notified_out_of_order(self) -> set[str]:
        rows = UnionPayNotification.objects.filter(txn__merchant__mer_id=self.merchant_ref).values_list(
            "txn__txn_type", "txn__order_id", "txn__orig__order_id", "delivered_at"
        )
        payments = [(order, at) for kind, order, _, at in rows if kind == UnionPayTxnType.CONSUME]
        refunds = [(consume, at) for kind, _, consume, at in rows if kind == UnionPayTxnType.REFUND]
        return {self.charge_id(order) for order in _after_a_refund(payments, refunds)}
