"""Routing's writes: the route of one charge (decision, reservations, attempts), breaker states,
daily counters and the decision record.

How payments uses it (`apps.payments.services.charge_create`):

    route = route_open(app=…, livemode=…, method=…, amount=…, card=…, request_id=…)
    account = route.next_account()          # reserves today's usage on it; None: nothing eligible
    charge = charge_open(…, account=account)
    route.bind(charge_id=charge.public_id)  # the decision record
    … provider call …
    route.attempt_failed(exc) → route.next_account()   # failover before the payer is involved
    route.attempt_succeeded() | route.attempt_unknown(exc)

Daily caps are exact under concurrency: one statement reserves, and only while the cap holds:
`INSERT … ON CONFLICT (account, day, currency) DO UPDATE SET amount = amount + x, count = count + 1
WHERE amount + x <= cap AND count + 1 <= count_cap RETURNING …`. The row lock taken by the upsert
serialises concurrent reservations on the same account and day; no row comes back when the cap
would be passed. A failed attempt releases its reservation.
"""

import datetime as dt
import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters.base import ChannelFailure, ChannelUnavailable
from apps.channels.models import ChannelAccount
from apps.core.money import to_minor
from apps.merchants.models import App
from apps.routing import selectors
from apps.routing.cards import Card
from apps.routing.engine import Breaker, Candidate, Decision, RouteRequest, decide
from apps.routing.models import CardBin, CircuitBreaker, DailyCounter, RoutingDecision

logger = logging.getLogger(__name__)

_HTTP_5XX = re.compile(r"^http_5\d\d$")


def failover_allowed(exc: BaseException) -> bool:
    """Whether a create failure certainly left the payer uninvolved: the provider was not reached
    (connection refused, DNS) or answered 5xx. Timeouts and refusals never fail over."""
    if not isinstance(exc, ChannelUnavailable):
        return False
    if not exc.reached_provider:
        return True
    status = getattr(exc, "http_status", None)
    return (isinstance(status, int) and 500 <= status <= 599) or bool(_HTTP_5XX.match(exc.code or ""))


# --- daily counters ---------------------------------------------------------------------------------


def daily_reserve(
    *, account_id: int, day: dt.date, currency: str, amount: int, amount_cap: int | None, count_cap: int | None
) -> bool:
    """Adds one payment of `amount` to the account's day, only if both caps still hold (atomic)."""
    if (amount_cap is not None and amount > amount_cap) or (count_cap is not None and count_cap < 1):
        return False
    table = DailyCounter._meta.db_table
    sql = (
        f"INSERT INTO {table} AS c (account_id, day, currency, amount, count) VALUES (%s, %s, %s, %s, 1) "
        "ON CONFLICT (account_id, day, currency) DO UPDATE SET amount = c.amount + EXCLUDED.amount, "
        "count = c.count + 1 WHERE (%s::bigint IS NULL OR c.amount + EXCLUDED.amount <= %s::bigint) "
        "AND (%s::integer IS NULL OR c.count + 1 <= %s::integer) RETURNING c.amount"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [account_id, day, currency, amount, amount_cap, amount_cap, count_cap, count_cap])
        return cursor.fetchone() is not None


def daily_release(*, account_id: int, day: dt.date, currency: str, amount: int) -> None:
    """Gives back a reservation whose attempt failed."""
    DailyCounter.objects.filter(account_id=account_id, day=day, currency=currency).update(
        amount=Greatest(F("amount") - amount, Value(0)), count=Greatest(F("count") - 1, Value(0))
    )


# --- breakers -----------------------------------------------------------------------------------


def breakers_save(*, changes: dict[int, Breaker]) -> None:
    """Persists breaker transitions decided by the engine (last writer wins: they agree)."""
    for account_id, breaker in changes.items():
        CircuitBreaker.objects.update_or_create(
            account_id=account_id,
            defaults={"state": breaker.state, "changed_at": breaker.changed_at, "reason": breaker.reason[:200]},
        )
        logger.warning("routing: breaker of account %s now %s (%s)", account_id, breaker.state, breaker.reason)
    if changes:
        selectors.routing_caches_clear()


# --- the route of one charge ---------------------------------------------------------------------


@dataclass
class RoutePlan:
    """A decision and what it was made from (no writes yet)."""

    request: RouteRequest
    decision: Decision
    candidates: dict[int, Candidate]
    card: Card | None
    bank: str
    now: dt.datetime


def route_plan(
    *, app_id: int, livemode: bool, method: str, amount: Money, card: Card | None, draw: float | None = None
) -> RoutePlan:
    """Reads everything the engine needs and runs it. Writes nothing (the what-if page uses it)."""
    now = timezone.now()
    currency = amount.currency.code
    bank = ""
    if card is not None:
        row = selectors.bin_lookup(digits=card.number)
        bank = row.bank if row else ""
    strategy, weights = selectors.route_config_for(app_id=app_id, method=method)
    candidates, usage = selectors.candidate_accounts(livemode=livemode, method=method, currency=currency, now=now)
    stats = selectors.routing_stats(candidates=candidates, usage=usage, now=now)
    request = RouteRequest(
        app_id=app_id,
        livemode=livemode,
        method=method,
        currency=currency,
        amount=to_minor(amount),
        bank=bank or None,
        strategy=strategy,
        weights=weights,
        draw=random.random() if draw is None else draw,
    )
    decision = decide(request, candidates, stats, now)
    return RoutePlan(
        request=request,
        decision=decision,
        candidates={c.account_id: c for c in candidates},
        card=card,
        bank=bank,
        now=now,
    )


@dataclass
class Route:
    """One charge's routing: hands out accounts in ranking order, reserving each one's daily usage,
    and records every attempt in the decision record once the charge exists."""

    plan: RoutePlan
    app: App
    request_id: str
    attempts: list[dict] = field(default_factory=list)
    current: int | None = None
    charge_id: str = ""
    _cursor: int = 0
    _record_id: int | None = None

    @property
    def decision(self) -> Decision:
        return self.plan.decision

    def explain(self) -> str:
        return self.decision.explain()

    def provider_method(self, account: ChannelAccount) -> str:
        """The product to ask the provider for (the policy can map e.g. bank_card to alipay_qr)."""
        policy = getattr(account, "routing_policy", None)
        return (policy.provider_method if policy else "") or self.plan.request.method

    def _attempt(self, account_id: int, outcome: str, code: str = "") -> None:
        self.attempts.append(
            {"account_id": account_id, "outcome": outcome, "code": code, "at": timezone.now().isoformat()}
        )

    def next_account(self) -> ChannelAccount | None:
        """The next ranked account whose daily caps still admit this payment, reserved; else None."""
        request = self.plan.request
        day = selectors.local_day(self.plan.now)
        ranking = self.decision.ranking
        while self._cursor < len(ranking):
            account_id = ranking[self._cursor]
            self._cursor += 1
            c = self.plan.candidates[account_id]
            if daily_reserve(
                account_id=account_id,
                day=day,
                currency=request.currency,
                amount=request.amount,
                amount_cap=c.daily_amount_cap,
                count_cap=c.daily_count_cap,
            ):
                self.current = account_id
                # Read afresh (not from the routing cache): credentials and URL as they are now.
                return ChannelAccount.objects.select_related("routing_policy").get(pk=account_id)
            self._attempt(account_id, "skipped", "daily_cap_reached")  # taken concurrently since the read
        self.current = None
        return None

    def _release(self) -> None:
        if self.current is None:
            return
        request = self.plan.request
        daily_release(
            account_id=self.current,
            day=selectors.local_day(self.plan.now),
            currency=request.currency,
            amount=request.amount,
        )

    def abandon(self) -> None:
        """The charge could not be opened: give the reservation back."""
        self._release()
        self.current = None

    def bind(self, *, charge_id: str) -> RoutingDecision:
        """Stores the decision record for the charge now that it exists."""
        self.charge_id = charge_id
        self._attempt(self.current, "chosen")
        plan, card = self.plan, self.plan.card
        record = RoutingDecision.objects.create(
            charge_id=charge_id,
            app=self.app,
            livemode=plan.request.livemode,
            method=plan.request.method,
            currency=plan.request.currency,
            amount=plan.request.amount,
            strategy=plan.decision.strategy,
            card_bin=card.bin if card else "",
            card_last4=card.last4 if card else "",
            card_fingerprint=card.fingerprint if card else "",
            card_bank=plan.bank,
            candidates=[a.as_dict() for a in plan.decision.assessments],
            attempts=self.attempts,
            winner_id=self.current,
            request_id=self.request_id,
        )
        self._record_id = record.pk
        return record

    def _save(self, winner_id: int | None) -> None:
        if self._record_id is not None:
            RoutingDecision.objects.filter(pk=self._record_id).update(attempts=self.attempts, winner_id=winner_id)

    def attempt_failed(self, exc: BaseException) -> None:
        """The current account failed the create: release its reservation and record why."""
        code = exc.code if isinstance(exc, ChannelFailure) and exc.code else type(exc).__name__
        failed = self.current
        self._release()
        self._attempt(failed, "failed", code)
        self.current = None
        self._save(winner_id=failed)
        selectors.routing_caches_clear()  # the call log has news: read it on the next decision

    def attempt_succeeded(self) -> None:
        self._attempt(self.current, "ok")
        self._save(winner_id=self.current)

    def attempt_unknown(self, exc: BaseException) -> None:
        """A timeout: the reservation stays (the payment may exist); the query settles it."""
        code = exc.code if isinstance(exc, ChannelFailure) and exc.code else type(exc).__name__
        self._attempt(self.current, "unknown", code)
        self._save(winner_id=self.current)


def route_open(*, app: App, livemode: bool, method: str, amount: Money, card: Card | None, request_id: str) -> Route:
    """Decides where a charge goes and persists any breaker transition the decision implied."""
    plan = route_plan(app_id=app.pk, livemode=livemode, method=method, amount=amount, card=card)
    if plan.decision.breaker_changes:
        with transaction.atomic():
            breakers_save(changes=dict(plan.decision.breaker_changes))
    return Route(plan=plan, app=app, request_id=request_id)


BINS_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bins.json"


def card_bins_load(*, path: Path = BINS_FIXTURE) -> int:
    """Loads a BIN fixture (Django fixture format); prefixes already in the table are kept as edited."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    created = CardBin.objects.bulk_create([CardBin(**row["fields"]) for row in rows], ignore_conflicts=True)
    return len(created)
