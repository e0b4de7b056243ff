"""The fault run (issues 4 and 6): money comes out right however providers and our own processes
misbehave, for Alipay, WeChat Pay and UnionPay together.

A live server (merchant API, the three sandboxes, notification endpoint), a real Celery worker and
a real `celery beat` (DatabaseScheduler: the sweeps every 5 s / 10 s / 30 s, the sandboxes' every
60 s), a local webhook receiver. Charge job i goes to provider i % 3 (alipay_qr, wx_pub_qr,
upacp_pc), as that provider's job n = i // 3; refunds are numbered per provider too, so each
provider sees the same plan. Merchant-wide faults are armed one firing at a time (`remaining`
+= 1) as the run goes, so they are spread over it rather than spent at once
(tests/faults/sandboxes.py lists them per provider); a few are scoped to one payment.

Faults, and which provider can exhibit them through the pay core:

| fault | Alipay | WeChat Pay | UnionPay |
| --- | --- | --- | --- |
| notification lost / delayed (4 s) / duplicated | yes | yes | yes |
| out of order: the payment notification held until a refund's (one payment each) | yes | yes | yes |
| notification amount differs by 1 fen (one payment each): flagged, no money moves | yes | yes | yes |
| create times out / times out but the payment is made | yes | yes | no (1) |
| 5xx | on precreate | on create, on refund | on query, on refund |
| query times out (one aimed at a reverse that loses its race to the payer) | yes | yes | yes (2) |
| refund times out / never notifies | yes (3) | yes | yes |

(1) paysys makes no create call to UnionPay: it signs the front consume form and the payer's
browser posts it to frontTransReq.do, so create faults are the payer's, not the pay core's.
(2) UnionPay has no close (a consume dies at payTimeout): no reverse, so no race either; its
reverse and race jobs pay instead. (3) Alipay refunds are synchronous (the answer settles them);
its refund faults hit the refund call and the trade notifications that follow a refund. WeChat
Pay and UnionPay refunds are accepted first and settle by notification or refund query.

Charges (most paid, some left unpaid, some reversed, some raced pay-against-reverse, some paid
twice on one order across two providers, a few expiring) and refunds (full, partial, partial then
the rest, and two concurrent partials that together would exceed the charge) go through the HTTP
API from threads. Midway the worker is SIGKILLed (its whole process tree) and a new one is
started. Then the run waits (bounded) for convergence, the expiring charges closed included (by
the active query after their time_expire, about 110 s after creation), and checks every charge
and refund against its sandbox's own records, that nothing took effect twice, that every planned
fault fired for every provider, the ledger, and the webhooks.

Size: PAYSYS_FAULT_RUN_CHARGES driven charge jobs (default 300, at least 90), besides 6 expiring
ones and 4 orders paid twice. A summary is printed (run with -s) and written to
var/test-faults-summary.txt.
"""

import json
import os
import queue
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from apps.events.models import Event, WebhookDelivery
from apps.ledger.models import JournalEntry
from apps.merchants.services import webhook_endpoint_create
from apps.payments.models import Charge, ChargeStatus, ChargeTransition, Refund, RefundStatus, RefundTransition
from apps.sandbox.models import FaultKind
from tests.faults.checks import (
    call_log_summary,
    ledger_check,
    money_mismatches,
    order_mismatches,
    snapshot,
    wait_for_convergence,
    webhook_mismatches,
)
from tests.faults.conftest import VAR
from tests.faults.sandboxes import FAULT_SECONDS, Sandbox
from tests.support import sign_headers

pytestmark = pytest.mark.e2e

CHARGES = int(os.environ.get("PAYSYS_FAULT_RUN_CHARGES", "300"))
CHARGE_THREADS = 6
REFUND_THREADS = 3
CONVERGENCE_SECONDS = 240  # the bound; the run stops waiting as soon as everything agrees
REFUNDED = (0, 2, 4)  # paid charges with n % 7 in these are refunded
AMOUNT_DIFFERS = (20, 18)  # paid charges with n % 20 == 18: the notification claims 1 fen more
OUT_OF_ORDER = (10, 9)  # refunded charges with n % 10 == 9: payment notified after the refund


def charge_plan(n: int, sandbox: Sandbox) -> str:
    if n % 10 == 3:
        return "unpaid"
    if n % 20 == 7 and sandbox.closes:
        return "reverse"
    if n % 20 == 17 and sandbox.closes:
        return "race"
    return "pay"


# --- the merchant's HTTP client ---------------------------------------------------------------------


class Api:
    """Signed calls to the merchant API over HTTP, as the Ping++ SDKs make them (one session per thread)."""

    def __init__(self, base_url: str, creds):
        self.base_url = base_url
        self.creds = creds
        self.local = threading.local()

    def post(self, path: str, payload: dict | None, *, timestamp: int | None = None) -> requests.Response:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {
            "Authorization": f"Bearer {self.creds.test_secret_key}",
            "Content-Type": "application/json",
            **sign_headers(private_pem=self.creds.private_pem, body=body, uri=path, timestamp=timestamp),
        }
        return session.post(self.base_url + path, data=body, headers=headers, timeout=60)


# --- the run ---------------------------------------------------------------------------------------


class Run:
    def __init__(self, api: Api, merchant, sandboxes: list[Sandbox], cluster):
        self.api = api
        self.merchant = merchant
        self.sandboxes = sandboxes
        self.cluster = cluster
        self.tag = f"{random.randrange(16**6):06x}"
        self.lock = threading.Lock()
        self.records = []  # one dict per charge job
        self.refund_calls = []  # (charge id, kind, status code, body)
        self.failed_refunds = []  # refunds answered `failed` (a provider 5xx)
        self.refund_queue = queue.Queue()
        self.charge_jobs_done = 0
        self.refund_jobs = Counter()  # per provider
        self.unexpected = []
        self.server_errors = []
        self.marks = {"start": time.monotonic()}

    # charges

    def create(self, sandbox: Sandbox, order_no: str, amount: int, **extra) -> tuple[int, dict]:
        payload = {
            "order_no": order_no, "app": {"id": self.merchant.app.public_id}, "channel": sandbox.channel,
            "amount": amount, "currency": "cny", "client_ip": "127.0.0.1", "subject": "fault run",
            "body": f"order {order_no}", **({"extra": sandbox.extra} if sandbox.extra else {}), **extra,
        }  # fmt: skip
        response = self.api.post("/v1/charges", payload)
        return response.status_code, response.json()

    def charge_job(self, i: int) -> None:
        try:
            sandbox, n = self.sandboxes[i % len(self.sandboxes)], i // len(self.sandboxes)
            sandbox.arm_due(sandbox.charge_faults, n)
            plan = charge_plan(n, sandbox)
            order_no = f"f{self.tag}{i:05d}"
            amount = 1000 + 37 * i
            status, body = self.create(sandbox, order_no, amount)
            record = {"i": i, "n": n, "provider": sandbox.provider, "plan": plan, "order_no": order_no,
                      "amount": amount, "create": status}  # fmt: skip
            if status == 200:
                record["id"] = body["id"]
                self.follow_plan(sandbox, record, body["credential"][sandbox.channel])
            elif status not in (402, 504):  # 402: the provider answered 5xx; 504: it did not answer in time
                self.unexpected.append(f"charge {order_no}: HTTP {status} {body}")
            with self.lock:
                self.records.append(record)
                self.charge_jobs_done += 1
        finally:
            connection.close()

    def follow_plan(self, sandbox: Sandbox, record: dict, credential) -> None:
        plan, n = record["plan"], record["n"]
        if plan == "pay":
            refunded = n % 7 in REFUNDED
            if n % AMOUNT_DIFFERS[0] == AMOUNT_DIFFERS[1]:
                sandbox.arm_for(FaultKind.NOTIFY_AMOUNT_DIFFERS, record["id"], {"delta": 1})
            if refunded and n % OUT_OF_ORDER[0] == OUT_OF_ORDER[1]:
                sandbox.arm_for(FaultKind.NOTIFY_OUT_OF_ORDER, record["id"])
            if (status := sandbox.pay(credential)) != 200:
                self.unexpected.append(f"pay {record['id']}: HTTP {status}")
            if refunded:
                self.refund_queue.put((sandbox, record["id"], record["amount"]))
            return
        sandbox.open(credential)
        if plan == "reverse":
            response = self.reverse(record)
            if response.status_code != 200 or response.json()["reversed"] is not True:
                self.unexpected.append(f"reverse {record['id']}: HTTP {response.status_code} {response.text[:300]}")
        elif plan == "race":  # the payer pays while the merchant reverses
            self.race(sandbox, record, credential)

    def race(self, sandbox: Sandbox, record: dict, credential) -> None:
        answers = {}
        barrier = threading.Barrier(2)

        def pay():
            barrier.wait()
            time.sleep(random.uniform(0, 0.3))  # either may come first
            answers["pay"] = sandbox.pay(credential)

        if record["n"] % 40 == 17:  # if the payer wins, the query that confirms it times out
            sandbox.arm_for(FaultKind.TIMEOUT_QUERY, record["id"], {"seconds": FAULT_SECONDS})
        payer = threading.Thread(target=pay)
        payer.start()
        barrier.wait()
        response = self.reverse(record)
        payer.join()
        outcome = "reversed" if response.status_code == 200 else response.json()["error"].get("code", "")
        record["race"] = outcome or f"HTTP {response.status_code}"
        if response.status_code == 500:  # checked last, so that every money check runs first
            self.server_errors.append(f"reverse {record['id']}: {response.text[:200]}")
        elif outcome not in ("reversed", "charge_paid") or answers.get("pay") != 200:
            self.unexpected.append(f"race {record['id']}: HTTP {response.status_code} {response.text[:300]}")

    def reverse(self, record: dict) -> requests.Response:
        """POST /reverse; a 402 (the provider did not answer in time: "try again") is retried, as a
        merchant would, each time with a fresh signature."""
        for attempt in range(5):
            response = self.api.post(f"/v1/charges/{record['id']}/reverse", None, timestamp=int(time.time()) + attempt)
            if response.status_code != 402:
                break
            record["reverse_retries"] = attempt + 1
            time.sleep(1)
        record["reverse"] = response.status_code
        return response

    def extras(self) -> None:
        """Charges that expire (time_expire in 90 s; opened, never paid) and orders paid twice, each
        by charges on two providers."""
        count = len(self.sandboxes)
        for n in range(6):
            sandbox = self.sandboxes[n % count]
            order_no = f"x{self.tag}{n:03d}"
            expire_at = int(time.time()) + 90  # at least a minute when the server checks it
            status, body = self.create(sandbox, order_no, 500 + n, time_expire=expire_at)
            assert status == 200, (n, expire_at, time.time(), body)
            sandbox.open(body["credential"][sandbox.channel])
            self.records.append({"i": -1, "provider": sandbox.provider, "plan": "expire", "order_no": order_no,
                                 "create": status, "id": body["id"]})  # fmt: skip
        for n in range(4):
            order_no = f"d{self.tag}{n:03d}"
            pair = [self.sandboxes[(n + k) % count] for k in range(2)]
            charges = [(s, *self.create(s, order_no, 700 + n, metadata={"attempt": k})) for k, s in enumerate(pair)]
            for sandbox, status, body in charges:
                assert status == 200, body
                self.records.append({"i": -1, "provider": sandbox.provider, "plan": "paid_twice",
                                     "order_no": order_no, "create": status, "id": body["id"]})  # fmt: skip
            for sandbox, _, body in charges:
                assert sandbox.pay(body["credential"][sandbox.channel]) == 200
        connection.close()

    def not_expired_yet(self) -> list[str]:
        """The expiring charges still open: closed (and ended at their provider) once the active
        query after their time_expire has run (queries at 5, 20, 50, 110 s after creation)."""
        expiring = [r["id"] for r in self.records if r["plan"] == "expire"]
        still_open = Charge.objects.filter(public_id__in=expiring).exclude(status=ChargeStatus.CLOSED)
        return [f"{charge_id} has not expired yet" for charge_id in still_open.values_list("public_id", flat=True)]

    # refunds

    def refund_worker(self) -> None:
        try:
            while True:
                item = self.refund_queue.get()
                if item is None:
                    return
                sandbox, charge_id, amount = item
                if not self.wait_succeeded(charge_id):
                    self.refund_calls.append((charge_id, "skipped: not succeeded in time", None, None))
                    continue
                with self.lock:
                    k = self.refund_jobs[sandbox.provider]
                    self.refund_jobs[sandbox.provider] += 1
                sandbox.arm_due(sandbox.refund_faults, k)
                self.refund_job(k, charge_id, amount)
        finally:
            connection.close()

    def wait_succeeded(self, charge_id: str, timeout: float = 45) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if Charge.objects.filter(public_id=charge_id, status=ChargeStatus.SUCCEEDED).exists():
                return True
            time.sleep(0.5)
        return False

    def refund(self, charge_id: str, kind: str, amount: int | None, n: int) -> int:
        body = {"description": f"{kind} {n}"}
        if amount is not None:
            body["amount"] = amount
        response = self.api.post(f"/v1/charges/{charge_id}/refunds", body)
        self.refund_calls.append((charge_id, kind, response.status_code, response.text[:300]))
        if response.status_code == 200:
            refund = response.json()
            if refund["status"] == "failed":  # the provider answered 5xx: it did nothing
                self.failed_refunds.append(refund)
            elif refund["status"] not in ("pending", "succeeded"):
                self.unexpected.append(f"refund of {charge_id}: {response.text[:300]}")
        return response.status_code

    def refund_job(self, k: int, charge_id: str, amount: int) -> None:
        shape = k % 4
        if shape == 0:
            expect = [self.refund(charge_id, "full", None, 0)]
            wanted = [200]
        elif shape == 1:
            expect = [self.refund(charge_id, "partial", amount * 3 // 10, 0)]
            wanted = [200]
        elif shape == 2:
            expect = [self.refund(charge_id, "partial", amount * 4 // 10, 0), self.refund(charge_id, "rest", None, 1)]
            wanted = [200, 200]
        else:  # two concurrent refunds of 60 %: exactly one fits
            statuses = []
            barrier = threading.Barrier(2)

            def one(n):
                barrier.wait()
                statuses.append(self.refund(charge_id, "concurrent", amount * 6 // 10, n))
                connection.close()

            threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            expect, wanted = sorted(statuses), [200, 400]
        if expect != wanted:
            self.unexpected.append(f"refunds of {charge_id} (shape {shape}): HTTP {expect}, wanted {wanted}")

    # the driver

    def drive(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.install_faults()
        self.extras()
        self.marks["extras"] = time.monotonic()
        refunders = [threading.Thread(target=self.refund_worker, daemon=True) for _ in range(REFUND_THREADS)]
        for thread in refunders:
            thread.start()
        killer = threading.Thread(target=self.kill_midway, daemon=True)
        killer.start()
        with ThreadPoolExecutor(CHARGE_THREADS) as pool:
            list(pool.map(self.charge_job, range(CHARGES)))
        self.marks["charges"] = time.monotonic()
        killer.join(timeout=120)
        for _ in refunders:
            self.refund_queue.put(None)
        for thread in refunders:
            thread.join(timeout=300)
        self.marks["refunds"] = time.monotonic()

    def kill_midway(self) -> None:
        while self.charge_jobs_done < CHARGES // 2:
            time.sleep(0.05)
        self.marks["kill"] = time.monotonic()
        self.cluster.kill_worker()
        self.cluster.start_worker()
        self.marks["restarted"] = time.monotonic()


# --- the summary -----------------------------------------------------------------------------------


def summary(run: Run, receiver, *, driven: float, waited: float, total: float) -> str:
    state = snapshot(run.sandboxes)
    events = Counter(Event.objects.values_list("type", flat=True))
    lines = [
        f"fault run {run.tag}: {CHARGES} charge jobs, drive {driven:.1f} s, convergence {waited:.1f} s, "
        f"total {total:.1f} s",
        "phases (s from start): "
        + ", ".join(
            f"{name} {at - run.marks['start']:.1f}" for name, at in sorted(run.marks.items(), key=lambda m: m[1])
        ),
        f"worker killed (SIGKILL, {run.cluster.killed} processes) after {CHARGES // 2} charge jobs; workers started: "
        f"{run.cluster.generation}",
        f"events: {dict(events)}; receiver got {len(receiver.received)} posts",
    ]
    for sandbox in run.sandboxes:
        charges = list(Charge.objects.filter(channel_account=sandbox.account))
        refunds = list(Refund.objects.filter(charge__channel_account=sandbox.account))
        records = [r for r in run.records if r["provider"] == sandbox.provider]
        payments, held_refunds = state[sandbox.account.pk]
        calls = [c for c in run.refund_calls if c[0] in {ch.public_id for ch in charges}]
        lines += [
            f"[{sandbox.provider}] charges: {len(charges)} {dict(Counter(c.status for c in charges))}; exceptions "
            f"{dict(Counter(c.exception for c in charges if c.exception))}; "
            f"reversed {sum(c.reversed for c in charges)}",
            f"[{sandbox.provider}] plans: {dict(Counter(r['plan'] for r in records))}; create answers "
            f"{dict(Counter(r['create'] for r in records))}; races "
            f"{dict(Counter(r['race'] for r in records if 'race' in r))}; reverse retries "
            f"{sum(r.get('reverse_retries', 0) for r in records)}",
            f"[{sandbox.provider}] refunds: {len(refunds)} {dict(Counter(r.status for r in refunds))}; automatic "
            f"{sum(bool(r.automatic) for r in refunds)}; API calls {dict(Counter((c[1], c[2]) for c in calls))}",
            f"[{sandbox.provider}] sandbox: payments paid {sum(h.paid for h in payments.values())}, ended unpaid "
            f"{sum(h.ended_unpaid for h in payments.values())}, waiting "
            f"{sum(not (h.paid or h.ended_unpaid) for h in payments.values())}; refunds {len(held_refunds)}; "
            f"payment notified after its refund: {len(sandbox.notified_out_of_order())}",
            f"[{sandbox.provider}] channel calls: {call_log_summary(sandbox.account.pk)}",
            f"[{sandbox.provider}] faults (armed, fired): "
            + ", ".join(f"{key} {v}" for key, v in sorted(sandbox.fault_report().items())),
        ]
    return "\n".join(lines)


# --- the test --------------------------------------------------------------------------------------


def test_money_comes_out_right_under_faults(merchant, sandboxes, live_server, receiver, cluster):
    assert CHARGES >= 90, "below 90 charge jobs some planned faults are never armed"
    started = time.monotonic()
    webhook_endpoint_create(app=merchant.app, url=receiver.url)
    run = Run(Api(live_server.url, merchant), merchant, sandboxes, cluster)

    run.drive()
    driven = time.monotonic() - started
    waited, problems, last = wait_for_convergence(
        lambda: money_mismatches(snapshot(sandboxes)) + webhook_mismatches(receiver) + run.not_expired_yet(),
        seconds=CONVERGENCE_SECONDS,
    )

    text = summary(run, receiver, driven=driven, waited=waited, total=time.monotonic() - started)
    text += f"\nlast to converge ({len(last)}): {last[:5]}"
    print("\n" + text)
    (VAR / "test-faults-summary.txt").write_text(text + "\n" + "\n".join(problems[:50]) + "\n")

    # --- the driver saw only answers it may see -------------------------------------------------
    charges = list(Charge.objects.select_related("channel_account"))
    refund_rows = list(Refund.objects.all())
    events = Counter(Event.objects.values_list("type", flat=True))
    assert not run.unexpected, run.unexpected[:20]
    assert len(charges) >= CHARGES and sum(1 for r in run.refund_calls if r[2] == 200) >= CHARGES // 3

    # --- converged: every charge and refund as its provider has it; every event delivered -------
    assert not problems, f"{len(problems)} mismatches after {waited:.0f} s: {problems[:30]}"
    assert Refund.objects.filter(status=RefundStatus.PENDING).count() == 0
    state = snapshot(sandboxes)
    failed_without_trade = [c for c in charges if c.public_id not in state[c.channel_account_id][0]]
    assert all(c.status == ChargeStatus.FAILED for c in failed_without_trade)
    assert len(failed_without_trade) == sum(1 for r in run.records if r["create"] == 402)

    # --- every planned fault fired, for every provider ------------------------------------------
    for sandbox in sandboxes:
        report = sandbox.fault_report()
        planned = [plan.key for plan in (*sandbox.charge_faults, *sandbox.refund_faults)]
        planned += [
            f"{kind} (one payment)" for kind in (FaultKind.NOTIFY_AMOUNT_DIFFERS, FaultKind.NOTIFY_OUT_OF_ORDER)
        ]
        assert all(report.get(key, (0, 0))[1] >= 1 for key in planned), (sandbox.provider, report)
        assert sandbox.notified_out_of_order(), f"{sandbox.provider}: no payment was notified after its refund"

    # --- a notification with another amount flags the charge and moves no money; the provider's
    # own record (the query) then settles it ----------------------------------------------------
    for sandbox in sandboxes:
        differed = set(sandbox.fired_for(FaultKind.NOTIFY_AMOUNT_DIFFERS))
        flagged = set(
            ChargeTransition.objects.filter(
                charge__public_id__in=differed, target="exception:amount_mismatch"
            ).values_list("charge__public_id", flat=True)
        )
        assert flagged, f"{sandbox.provider}: no notification with another amount reached paysys"
        for charge in Charge.objects.filter(public_id__in=differed):
            assert (charge.status, charge.amount_received) == (ChargeStatus.SUCCEEDED, charge.amount), charge
            succeeded_by = ChargeTransition.objects.get(charge=charge, target=ChargeStatus.SUCCEEDED).by
            assert succeeded_by != f"{sandbox.provider}:notification", (charge.public_id, succeeded_by)

    # --- refunds: only a provider's 5xx fails one, and then the provider did nothing -------------
    failed = [r for r in refund_rows if r.status == RefundStatus.FAILED]
    assert {r.public_id for r in failed} == {r["id"] for r in run.failed_refunds}
    assert len(failed) == sum(s.fault_report().get("error_5xx[refund]", (0, 0))[1] for s in sandboxes)
    assert events.get("refund.failed", 0) == len(failed)
    assert not [r for r in refund_rows if r.status not in (RefundStatus.SUCCEEDED, RefundStatus.FAILED)]

    # --- orders follow their charges; a second payment of an order is refunded in full ----------
    assert order_mismatches() == []
    twice = Charge.objects.filter(order__order_no__startswith=f"d{run.tag}")
    assert twice.count() == 8 and twice.filter(status=ChargeStatus.SUCCEEDED).count() == 8
    flagged = list(twice.filter(exception="duplicate_payment"))
    assert len(flagged) == 4 and len({c.order_id for c in flagged}) == 4
    for charge in flagged:
        assert [(r.automatic, r.status, r.amount) for r in charge.refunds.all()] == [
            ("duplicate_payment", RefundStatus.SUCCEEDED, charge.amount)
        ]

    # --- no duplicate effect --------------------------------------------------------------------
    succeeded = {c.public_id for c in charges if c.status == ChargeStatus.SUCCEEDED}
    transitions = Counter(
        ChargeTransition.objects.filter(target=ChargeStatus.SUCCEEDED).values_list("charge__public_id", flat=True)
    )
    assert set(transitions) == succeeded and set(transitions.values()) <= {1}, transitions.most_common(5)
    refunded = {r.public_id for r in refund_rows if r.status == RefundStatus.SUCCEEDED}
    refund_transitions = Counter(
        RefundTransition.objects.filter(target=RefundStatus.SUCCEEDED).values_list("refund__public_id", flat=True)
    )
    assert set(refund_transitions) == refunded and set(refund_transitions.values()) <= {1}
    per_object = defaultdict(Counter)
    for event in Event.objects.all():
        per_object[event.type][event.data["object"]["id"]] += 1
    assert set(per_object["charge.succeeded"]) == succeeded
    assert set(per_object["charge.succeeded"].values()) <= {1}, per_object["charge.succeeded"].most_common(3)
    assert set(per_object["refund.succeeded"]) == refunded
    assert set(per_object["refund.succeeded"].values()) <= {1}, per_object["refund.succeeded"].most_common(3)

    # one journal entry per event (unique (event_type, reference) forbids a second one)
    entries = JournalEntry.objects.values_list("reference", flat=True)
    payments_posted = set(entries.filter(event_type="payment.succeeded"))
    assert payments_posted == succeeded, (len(payments_posted), len(succeeded))
    refunds_posted = set(entries.filter(event_type="refund.succeeded"))
    assert refunds_posted == refunded, (len(refunds_posted), len(refunded))
    code, output = ledger_check()
    assert code == 0, output

    # --- webhooks: each event at least once, one id one body ------------------------------------
    bodies = defaultdict(set)
    for received in list(receiver.received):
        bodies[json.loads(received.body)["id"]].add(received.body)
    assert set(Event.objects.values_list("public_id", flat=True)) <= set(bodies)
    conflicting = {event_id: len(b) for event_id, b in bodies.items() if len(b) > 1}
    assert not conflicting, conflicting
    stored = dict(Event.objects.values_list("public_id", "body"))
    assert all(b == {stored[event_id].encode()} for event_id, b in bodies.items() if event_id in stored)

    assert WebhookDelivery.objects.count() == len(stored)  # one endpoint

    # --- never a 500: a reverse that loses the race to the payer, when the query confirming the
    # payment fails (timeout), must answer a Ping++ error, not an internal error ----------------
    assert not run.server_errors, run.server_errors
