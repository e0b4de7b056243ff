"""Routing's writes: the route of one charge (decision, reservations, attempts), breaker states,
daily counters and the decision record.

How payments uses it (`apps.payments.services.charge_create`):

    route = route_open(app=…, livemode=…, method=…, amount=…, card=…, request_id=…)
    account = route.next_account()          # reserves today's usage on it; None: nothing eligible
    charge = charge_open(…, account=account, along=route.record)  # written with the decision record
    with held_writes():                     # each attempt's record is held for phase 3's statement
        … provider call …
        route.attempt_failed(exc) → route.next_account()   # failover before the payer is involved
        route.attempt_succeeded() | route.attempt_unknown(exc)

and, in the transaction that closes or fails a charge unpaid: `route_release(charge_id=…)`.

Daily caps are exact under concurrency: one statement reserves, and only while the cap holds:
`INSERT … ON CONFLICT (account, day, currency) DO UPDATE SET amount = amount + x, count = count + 1
WHERE amount + x <= cap AND count + 1 <= count_cap RETURNING …`. The row lock taken by the upsert
serialises concurrent reservations on the same account and day; no row comes back when the cap
would be passed. The reservation is given back once: by a failed attempt, or when the charge
closes or fails unpaid (the decision record holds it, see `route_release`). A timeout keeps it.

A half-open breaker admits at most `breaker_probes` charges at a time: each takes a probe token
(`probe_take`, one conditional UPDATE on the breaker row) and its outcome closes or re-opens the
breaker (`probe_end`). Lock order: decision record, breaker, counter.
"""

import datetime as dt
import json
import logging
import random
import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters.base import ChannelFailure, ChannelRejected, ChannelUnavailable
from apps.channels.models import ChannelAccount
from apps.core.db import update_later
from apps.core.money import to_minor
from apps.merchants.models import App
from apps.routing import selectors
from apps.routing.cards import Card
from apps.routing.engine import (
    Breaker,
    BreakerConfig,
    BreakerState,
    Candidate,
    Decision,
    ProbeOutcome,
    RouteRequest,
    breaker_after_probe,
    decide,
)
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


def breakers_save(*, changes: dict[int, tuple[Breaker, Breaker]]) -> bool:
    """Persists breaker transitions decided by the engine, each `(from, to)` only while the row
    still holds `from` (compare-and-set; no row is a closed breaker). Returns False when another
    process moved a breaker first: the decision was made on a state that no longer holds."""
    # A list, not a generator: every move is tried before `all` looks at the results.
    return all([_breaker_move(account_id=account_id, before=b, after=a) for account_id, (b, a) in changes.items()])


def breakers_close(*, account_ids: list[int], reason: str) -> int:
    """Closes these accounts' breakers whatever their state (the console: the account is healthy
    again). Every decision reads the breaker rows afresh, so the next one sees it."""
    return CircuitBreaker.objects.filter(account_id__in=account_ids).update(
        state=BreakerState.CLOSED, changed_at=timezone.now(), reason=reason[:200], probes=0, probe_until=None
    )


def _breaker_move(*, account_id: int, before: Breaker, after: Breaker) -> bool:
    table = CircuitBreaker._meta.db_table
    params = {
        "account": account_id,
        "state": str(after.state),
        "changed_at": after.changed_at,
        "reason": after.reason[:200],
        "was": str(before.state),
        "was_at": before.changed_at,
    }
    if before.changed_at is None:  # never persisted: closed
        sql = (
            f"INSERT INTO {table} (account_id, state, changed_at, reason, probes) "
            "VALUES (%(account)s, %(state)s, %(changed_at)s, %(reason)s, 0) ON CONFLICT (account_id) DO NOTHING"
        )
    else:
        sql = (
            f"UPDATE {table} SET state = %(state)s, changed_at = %(changed_at)s, reason = %(reason)s, "
            "probes = 0, probe_until = NULL "
            "WHERE account_id = %(account)s AND state = %(was)s AND changed_at = %(was_at)s"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        moved = cursor.rowcount == 1
    if moved:
        logger.warning("routing: breaker of account %s now %s (%s)", account_id, after.state, after.reason)
    return moved


def _probe_lease(config: BreakerConfig) -> float:
    """How long a probe holds its token at most: a charge that died mid-probe stops blocking the
    next one after this (the cool-down, and at least two provider timeouts)."""
    return max(float(config.cooldown_seconds), 2 * float(settings.PAYSYS_CHANNEL_TIMEOUT_SECONDS))


def probe_take(*, account_id: int, breaker: Breaker, config: BreakerConfig, now: dt.datetime) -> bool:
    """Takes one of the half-open breaker's probe tokens (at most `config.probes` at a time), only
    while the row is still that half-open breaker. Atomic: concurrent takers serialise on the row."""
    sql = (
        f"UPDATE {CircuitBreaker._meta.db_table} SET "
        "probes = CASE WHEN probe_until IS NULL OR probe_until <= %(now)s THEN 1 ELSE probes + 1 END, "
        "probe_until = %(until)s "
        "WHERE account_id = %(account)s AND state = %(half_open)s AND changed_at = %(changed_at)s "
        "AND (probe_until IS NULL OR probe_until <= %(now)s OR probes < %(limit)s)"
    )
    params = {
        "account": account_id,
        "half_open": str(BreakerState.HALF_OPEN),
        "changed_at": breaker.changed_at,
        "now": now,
        "until": now + dt.timedelta(seconds=_probe_lease(config)),
        "limit": config.probes,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def probe_end(*, account_id: int, breaker: Breaker, outcome: ProbeOutcome) -> None:
    """A probe charge is over: the breaker closes (success) or opens again (fault), else its token
    is given back. Nothing happens if the breaker has moved on meanwhile."""
    after = breaker_after_probe(breaker, outcome, timezone.now())
    if after is not breaker:
        _breaker_move(account_id=account_id, before=breaker, after=after)
        return
    CircuitBreaker.objects.filter(account_id=account_id, state=breaker.state, changed_at=breaker.changed_at).update(
        probes=Greatest(F("probes") - 1, Value(0))
    )


# --- reservations held by a decision record ----------------------------------------------------


def _reservation_give_back(*, closing: bool, **where) -> bool:
    """Gives back the daily-cap reservation held by the decision record matching `where`, once:
    the record is locked and its reservation cleared in the same transaction as the counter
    update. `closing` also marks the record released (no reservation is taken for it again).
    Returns whether a reservation was given back."""
    with transaction.atomic(savepoint=False):  # the caller's transaction, when there is one
        row = (
            RoutingDecision.objects.select_for_update()
            .filter(**where)
            .values_list("pk", "reserved_account_id", "reserved_day", "currency", "amount")
            .first()
        )
        if row is None:
            return False
        pk, account_id, day, currency, amount = row
        changes = {"reserved_account": None, "reserved_day": None}
        if closing:
            changes["released_at"] = timezone.now()
        RoutingDecision.objects.filter(pk=pk).update(**changes)
        if account_id is None:
            return False
        daily_release(account_id=account_id, day=day, currency=currency, amount=amount)
        return True


def route_release(*, charge_id: str) -> bool:
    """A charge closed or failed unpaid: gives its daily-cap reservation (amount and count) back to
    the account's day, exactly once, whoever calls it and however often.

    Call it inside the transaction that closes or fails the charge, so that the release commits
    or rolls back with it. A charge whose attempt already gave its reservation back (failover,
    refusal) releases nothing more. Returns whether a reservation was given back.
    """
    return _reservation_give_back(closing=True, charge_id=charge_id, released_at__isnull=True)


# --- the route of one charge ---------------------------------------------------------------------


@dataclass
class RoutePlan:
    """A decision and what it was made from (no writes yet)."""

    request: RouteRequest
    decision: Decision
    candidates: dict[int, Candidate]  # by account id; shared with the routing cache: read only
    accounts: dict[int, ChannelAccount]  # the candidates' accounts (routing policy joined): read only
    card: Card | None
    bank: str
    now: dt.datetime

    def breaker(self, account_id: int) -> Breaker:
        """The account's breaker as the decision left it."""
        return self.decision.breaker_changes.get(account_id, self.candidates[account_id].breaker)


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
    inputs = selectors.decision_inputs(app_id=app_id, livemode=livemode, method=method, currency=currency, now=now)
    request = RouteRequest(
        app_id=app_id,
        livemode=livemode,
        method=method,
        currency=currency,
        amount=to_minor(amount),
        bank=bank or None,
        strategy=inputs.strategy,
        weights=inputs.weights,
        draw=random.random() if draw is None else draw,
    )
    decision = decide(request, inputs.candidates, inputs.stats, now)
    return RoutePlan(
        request=request,
        decision=decision,
        candidates=inputs.by_id,
        accounts=inputs.accounts,
        card=card,
        bank=bank,
        now=now,
    )


def _probe_outcome(exc: BaseException) -> ProbeOutcome:
    return ProbeOutcome.REFUSED if isinstance(exc, ChannelRejected) else ProbeOutcome.FAULT


@dataclass
class Route:
    """One charge's routing: hands out accounts in ranking order, reserving each one's daily usage
    (and a probe token when its breaker is half-open), and records every attempt in the decision
    record once the charge exists."""

    plan: RoutePlan
    app: App
    request_id: str
    attempts: list[dict] = field(default_factory=list)
    current: int | None = None
    charge_id: str = ""
    _cursor: int = 0
    _record: RoutingDecision | None = None
    _probing: Breaker | None = None  # the half-open breaker whose probe token the current attempt holds

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
        """The next ranked account that admits this payment now, reserved; else None.

        Reserved means: today's usage (the daily caps, exact) and, when its breaker is half-open,
        one of its probe tokens. Once the decision record exists, the reservation is written on it
        in the same transaction; a charge that was closed meanwhile gets no new account.
        """
        ranking = self.decision.ranking
        while self._cursor < len(ranking):
            account_id = ranking[self._cursor]
            self._cursor += 1
            # One statement (the first account, breaker not half-open) needs no transaction of its own.
            several = self._record is not None or self.plan.breaker(account_id).state == BreakerState.HALF_OPEN
            with transaction.atomic() if several else nullcontext():
                if self._record is not None and not self._record_open():
                    return None
                skipped = self._reserve(account_id)
                if skipped:
                    self._attempt(account_id, "skipped", skipped)
                    continue
            self.current = account_id
            # As configured at the version this decision read (any edit of an account or its
            # policy moves the version, and the next decision reloads): no read of its own.
            return self.plan.accounts[account_id]
        self.current = None
        return None

    def _record_open(self) -> bool:
        """Locks the decision record (the lock order: record, breaker, counter); False once the
        charge has been closed or failed."""
        released = (
            RoutingDecision.objects.select_for_update()
            .filter(pk=self._record.pk)
            .values_list("released_at", flat=True)
            .first()
        )
        return released is None

    def _reserve(self, account_id: int) -> str:
        """Reserves the account for this payment; the reason it was skipped, or "" when reserved."""
        request, c = self.plan.request, self.plan.candidates[account_id]
        breaker = self.plan.breaker(account_id)
        probing = breaker.state == BreakerState.HALF_OPEN
        if probing and not probe_take(
            account_id=account_id, breaker=breaker, config=c.breaker_config, now=timezone.now()
        ):
            return "breaker_probing"  # the probe tokens are taken (or the breaker moved on)
        day = selectors.local_day(self.plan.now)
        reserved = daily_reserve(
            account_id=account_id,
            day=day,
            currency=request.currency,
            amount=request.amount,
            amount_cap=c.daily_amount_cap,
            count_cap=c.daily_count_cap,
        )
        if not reserved:
            if probing:
                probe_end(account_id=account_id, breaker=breaker, outcome=ProbeOutcome.NONE)
            return "daily_cap_reached"  # taken concurrently since the read
        self._probing = breaker if probing else None
        if self._record is not None:
            RoutingDecision.objects.filter(pk=self._record.pk).update(reserved_account_id=account_id, reserved_day=day)
        return ""

    def _release(self) -> None:
        """Gives back the current account's reservation (through the record once it exists)."""
        if self.current is None:
            return
        if self._record is not None:
            _reservation_give_back(closing=False, pk=self._record.pk, reserved_account_id=self.current)
            return
        request = self.plan.request
        daily_release(
            account_id=self.current,
            day=selectors.local_day(self.plan.now),
            currency=request.currency,
            amount=request.amount,
        )

    def _probe_over(self, outcome: ProbeOutcome) -> None:
        if self._probing is not None and self.current is not None:
            probe_end(account_id=self.current, breaker=self._probing, outcome=outcome)
        self._probing = None

    def abandon(self) -> None:
        """The charge could not be opened (its statement or transaction wrote nothing, the record
        included): give the reservation and any probe token back."""
        self._record = None
        self._release()
        self._probe_over(ProbeOutcome.NONE)
        self.current = None

    def record(self, charge_id: str) -> RoutingDecision:
        """The decision record of the charge being opened, with its reservation, unsaved: the
        caller writes it with the charge (one commit); `abandon` forgets it if that fails."""
        self.charge_id = charge_id
        self._attempt(self.current, "chosen")
        plan, card = self.plan, self.plan.card
        record = RoutingDecision(
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
            reserved_account_id=self.current,
            reserved_day=selectors.local_day(plan.now),
            request_id=self.request_id,
        )
        self._record = record
        return record

    def _save(self, winner_id: int | None) -> None:
        if self._record is not None:
            self._record.attempts, self._record.winner_id = self.attempts, winner_id
            update_later(self._record, ("attempts", "winner_id"))  # held by the caller's `held_writes`

    def attempt_failed(self, exc: BaseException) -> None:
        """The current account failed the create: release its reservation and record why."""
        code = exc.code if isinstance(exc, ChannelFailure) and exc.code else type(exc).__name__
        failed = self.current
        self._release()
        self._probe_over(_probe_outcome(exc))
        self._attempt(failed, "failed", code)
        self.current = None
        self._save(winner_id=failed)

    def attempt_succeeded(self) -> None:
        self._probe_over(ProbeOutcome.OK)
        self._attempt(self.current, "ok")
        self._save(winner_id=self.current)

    def attempt_unknown(self, exc: BaseException) -> None:
        """A timeout: the reservation stays (the payment may exist); the query settles it."""
        code = exc.code if isinstance(exc, ChannelFailure) and exc.code else type(exc).__name__
        self._probe_over(ProbeOutcome.FAULT)
        self._attempt(self.current, "unknown", code)
        self._save(winner_id=self.current)


def route_open(*, app: App, livemode: bool, method: str, amount: Money, card: Card | None, request_id: str) -> Route:
    """Decides where a charge goes and persists the breaker transitions the decision implied. If
    another process moved one of those breakers first, decides again on the state it left."""
    for _ in range(3):
        plan = route_plan(app_id=app.pk, livemode=livemode, method=method, amount=amount, card=card)
        changes = {
            account_id: (plan.candidates[account_id].breaker, after)
            for account_id, after in plan.decision.breaker_changes.items()
        }
        if not changes or breakers_save(changes=changes):
            break
    return Route(plan=plan, app=app, request_id=request_id)


BINS_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bins.json"


def card_bins_load(*, path: Path = BINS_FIXTURE) -> int:
    """Loads a BIN fixture (Django fixture format); prefixes already in the table are kept as edited."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    created = CardBin.objects.bulk_create([CardBin(**row["fields"]) for row in rows], ignore_conflicts=True)
    return len(created)
