"""Charges that succeed through the real pay core (phase 1 + the provider's success result)."""

import itertools

from django.utils import timezone
from moneyed import Money

from apps.channels.adapters.base import PaymentResult, PaymentStatus
from apps.channels.services import channel_account_upsert
from apps.merchants.services import app_create, merchant_get_or_create
from apps.payments.services import ChargeParams, charge_apply_provider_result, charge_open

_order_numbers = itertools.count(1)


def make_app(name: str):
    app, _ = app_create(merchant=merchant_get_or_create(name=name), name=f"{name} app")
    return app


def make_channel_account(name: str = "Ledger test Alipay"):
    return channel_account_upsert(
        name=name, provider="alipay", base_url="http://127.0.0.1:9/gateway.do", credentials={},
        methods=["alipay_qr"], currencies=["CNY", "USD"], livemode=False,
    )  # fmt: skip


def pay(app, account, amount: Money, *, transaction_no: str | None = None):
    """Opens a charge and applies the provider's success to it, as a notification would."""
    order_no = f"ledger{next(_order_numbers):08d}"
    charge = charge_open(
        app=app,
        livemode=False,
        params=ChargeParams(
            order_no=order_no, channel="alipay_qr", amount=amount, client_ip="127.0.0.1", subject="s", body="b"
        ),
        account=account,
        request_id="test",
    )
    return succeed(charge, transaction_no=transaction_no or f"T{order_no}")


def succeed(charge, *, transaction_no: str):
    return charge_apply_provider_result(
        charge_id=charge.pk,
        result=PaymentResult(
            out_trade_no=charge.public_id,
            status=PaymentStatus.SUCCEEDED,
            transaction_no=transaction_no,
            amount=charge.amount,
            paid_at=timezone.now(),
        ),
        by="test",
        request_id="test",
    )
