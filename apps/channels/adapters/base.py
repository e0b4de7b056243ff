"""The one typed interface every provider adapter implements: dataclasses in, dataclasses out.

Adapters speak the provider's real wire protocol (through its SDK where one exists) and know
nothing of paysys models: callers pass an `AccountConfig` and plain values.
"""

import abc
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import BinaryIO, NamedTuple

from moneyed import Money


@dataclass(frozen=True)
class AccountConfig:
    id: int
    provider: str
    base_url: str
    credentials: dict
    livemode: bool
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class PaymentRequest:
    out_trade_no: str  # paysys's charge id, unique per provider account
    method: str  # Ping++ channel code: alipay_qr, …
    amount: Money
    subject: str
    body: str
    client_ip: str
    time_expire: datetime
    notify_url: str
    extra: dict = field(default_factory=dict)
    # When paysys asked (the charge's creation time). Providers that identify a transaction by
    # its request time (UnionPay's txnTime) derive it from this, so queries can name it later.
    requested_at: datetime | None = None


@dataclass(frozen=True)
class PaymentCreated:
    """What the payer needs (the value under `credential[<channel>]`) and the provider's trade no."""

    credential: str | dict
    transaction_no: str | None = None


class PaymentStatus(enum.StrEnum):
    NOT_FOUND = "not_found"  # the provider has no such trade (yet)
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class PaymentResult:
    """The provider's statement about one payment, from a query answer or a notification."""

    out_trade_no: str
    status: PaymentStatus
    transaction_no: str | None = None
    amount: Money | None = None
    paid_at: datetime | None = None
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RefundRequest:
    out_trade_no: str  # the charge's id
    transaction_no: str  # the provider's trade no
    out_refund_no: str  # paysys's refund id, unique per provider account
    amount: Money  # this refund
    total_amount: Money  # the original payment
    reason: str
    notify_url: str
    requested_at: datetime | None = None  # the refund's creation time (see PaymentRequest)


class RefundStatus(enum.StrEnum):
    NOT_FOUND = "not_found"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class RefundResult:
    """The provider's statement about one refund (answer to refund, refund query or notification)."""

    out_refund_no: str
    status: RefundStatus
    out_trade_no: str = ""
    refund_no: str | None = None
    amount: Money | None = None
    succeeded_at: datetime | None = None
    failure_code: str = ""
    failure_msg: str = ""
    raw: dict = field(default_factory=dict)


class BillLineKind(enum.StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class BillLine(NamedTuple):
    """One line of a provider's daily bill, in paysys's standard form.

    Bulk data: a bill has up to millions of lines, each going straight into set-based SQL in
    minor units. So a line is a tuple of plain values, with integer minor units, not a dataclass
    with Money (that alone would cost more than loading the line into PostgreSQL).

    `kind` is a BillLineKind value and says which way money moved; `amount` and `fee` are positive
    minor units of `currency` (ISO code). `status` is what the provider states of the payment or
    refund, in paysys's words (PaymentStatus / RefundStatus values: `succeeded`, `closed`,
    `pending` …). `out_trade_no` is paysys's charge id; `out_refund_no` paysys's refund id on
    refund lines; `trade_no` / `refund_no` are the provider's.
    """

    kind: str
    out_trade_no: str
    out_refund_no: str
    trade_no: str
    refund_no: str
    amount: int
    fee: int
    currency: str
    status: str
    occurred_at: datetime


@dataclass(frozen=True)
class ProviderReply:
    """An HTTP answer in the form the provider expects (e.g. Alipay's plain `success`)."""

    status: int
    body: bytes
    content_type: str = "text/plain"


class ChannelFailure(Exception):
    """A provider call that did not produce an answer we can act on."""

    def __init__(self, message: str, *, code: str = "", reached_provider: bool = True, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.reached_provider = reached_provider
        self.http_status = http_status  # the provider's HTTP status when it answered (for the call log)


class ChannelTimeout(ChannelFailure):
    """No answer in time: the outcome is unknown and must be resolved by a query."""


class ChannelUnavailable(ChannelFailure):
    """Connection refused or 5xx: the provider did not act on the request."""


class ChannelRejected(ChannelFailure):
    """The provider answered and refused (a business failure with the provider's code)."""


class ChannelResponseInvalid(ChannelFailure):
    """The answer failed signature verification or could not be parsed: never trusted."""


class NotificationInvalid(Exception):
    """A notification whose signature or content does not verify."""


class BillNotReady(ChannelFailure):
    """The provider has no bill for that day yet."""


class BillInvalid(Exception):
    """A bill file that is truncated, malformed or in the wrong encoding."""


class ChannelAdapter(abc.ABC):
    provider: str
    methods: frozenset[str]
    currencies: frozenset[str]
    refunds_notify: bool
    # False when the provider has no close: an unpaid payment stays payable until its expiry.
    closes_payments: bool = True

    def __init__(self, account: AccountConfig):
        self.account = account

    @abc.abstractmethod
    def create_payment(self, request: PaymentRequest) -> PaymentCreated: ...

    @abc.abstractmethod
    def query_payment(
        self, *, out_trade_no: str, currency: str, requested_at: datetime | None = None
    ) -> PaymentResult: ...

    @abc.abstractmethod
    def close_payment(self, *, out_trade_no: str, requested_at: datetime | None = None) -> None: ...

    @abc.abstractmethod
    def parse_notification(
        self, *, headers: dict, body: bytes, currency: str | None = None
    ) -> PaymentResult | RefundResult:
        """Verifies the provider's signature and returns what it states; NotificationInvalid if not."""

    @abc.abstractmethod
    def refund(self, request: RefundRequest) -> RefundResult: ...

    @abc.abstractmethod
    def query_refund(
        self, *, out_trade_no: str, out_refund_no: str, currency: str, requested_at: datetime | None = None
    ) -> RefundResult: ...

    @abc.abstractmethod
    def download_bill(self, *, bill_date: date, dest: BinaryIO) -> str:
        """Writes the provider's raw bill file for a day to `dest`; returns its file name.

        BillNotReady when the provider has not published it yet (retry later).
        """

    @abc.abstractmethod
    def parse_bill(self, source: BinaryIO) -> Iterator[BillLine]:
        """Streams standard bill lines out of a raw bill file, one at a time (never the whole file
        in memory); BillInvalid, possibly after some lines, on a truncated, malformed or
        wrongly encoded file. Its message starts with the provider's name."""

    @abc.abstractmethod
    def notification_ack(self) -> ProviderReply: ...

    @abc.abstractmethod
    def notification_nack(self) -> ProviderReply: ...
