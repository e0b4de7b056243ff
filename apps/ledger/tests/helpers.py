"""Shared test helpers for the ledger: posting payments and reading balances by key."""

import threading
from collections.abc import Callable

from django.db import connections
from moneyed import Money

from apps.ledger import accounts as acc
from apps.ledger import services
from apps.ledger.selectors import balance_of


def cny(minor: int, currency: str = "CNY") -> Money:
    from apps.core.money import from_minor

    return from_minor(minor, currency)


def post_payment(reference: str, *, merchant_id: int = 1, channel_account_id: int = 7, amount: int = 10000,
                 platform_fee: int = 60, channel_fee: int = 25, currency: str = "CNY", livemode: bool = True,
                 occurred_at=None):  # fmt: skip
    return services.payment_succeeded_post(
        reference=reference,
        livemode=livemode,
        merchant_id=merchant_id,
        channel_account_id=channel_account_id,
        amount=cny(amount, currency),
        platform_fee=cny(platform_fee, currency),
        channel_fee=cny(channel_fee, currency),
        occurred_at=occurred_at,
    )


def pending(merchant_id: int = 1, currency: str = "CNY", livemode: bool = True) -> int:
    return balance_of(livemode=livemode, key=acc.merchant_pending(merchant_id, currency))


def available(merchant_id: int = 1, currency: str = "CNY", livemode: bool = True) -> int:
    return balance_of(livemode=livemode, key=acc.merchant_available(merchant_id, currency))


def run_threads(n: int, target: Callable[[int], object]) -> list:
    """Runs target(i) in n real threads started together; returns results or raised exceptions."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:  # collected for the test to assert on
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results
