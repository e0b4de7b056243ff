"""Migration 0004: runs done before 0003 (`cleared = {}`) get what they moved to bank, so a newer
file of their day moves only the difference.

The tables are migrated back to 0003 and forth: rows are written there through the models of that
state (today's have columns of later migrations). A test in a transaction leaves the tables as they
were by its rollback; one that commits migrates them to the latest state again (`latest_schema`)."""

from datetime import date

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.channels.services import channel_account_upsert
from apps.ledger.services import channel_settlement_post
from apps.reconciliation.models import ReconRun, ReconRunStatus
from apps.reconciliation.services import recon_run
from tests.reconciliation.conftest import balance, ledger_ok
from tests.reconciliation.test_clearing import DAY_NET, clearing_entries, upload

BEFORE, BACKFILL = "0003_lines_status_and_exactly_once_clearing", "0004_backfill_cleared_of_earlier_runs"
DAY = date(2026, 3, 2)


def migrate(name: str | None = None):
    """The app's tables as of migration `name` (default: the latest); returns that state's models."""
    executor = MigrationExecutor(connection)
    target = ("reconciliation", name) if name else executor.loader.graph.leaf_nodes("reconciliation")[0]
    executor.migrate([target])
    return executor.loader.project_state(target).apps


@pytest.fixture
def latest_schema():
    """However the test ends, the next one finds the tables as today's models expect them."""
    yield
    migrate()


def done_run(models, account, sha: str, *, cleared: dict, cleared_to_bank: int = 0):
    bills, runs = models.get_model("reconciliation", "BillFile"), models.get_model("reconciliation", "ReconRun")
    bill = bills.objects.create(account_id=account.pk, day=DAY, file_name=sha[:4], sha256=sha, size=1, source="upload")
    return runs.objects.create(
        account_id=account.pk, day=DAY, bill=bill, status=ReconRunStatus.DONE, cleared=cleared,
        cleared_to_bank=cleared_to_bank, currency="CNY",
    )  # fmt: skip


def clearing(account, sha: str, currency: str, amount: int) -> None:
    """What a run posted for its bill (the reference every run has used)."""
    channel_settlement_post(
        reference=f"{account.pk}:{DAY}:{currency}:{sha[:16]}", livemode=False, channel_account_id=account.pk,
        currency=currency, amount=amount,
    )  # fmt: skip


@pytest.mark.django_db
def test_a_run_done_before_0003_gets_every_currency_it_moved_and_later_runs_keep_theirs():
    models = migrate(BEFORE)
    account = channel_account_upsert(
        name="Recon migration", provider="alipay", base_url="http://127.0.0.1:9/", credentials={},
        methods=["alipay_qr"], currencies=["CNY", "USD"], livemode=False,
    )  # fmt: skip
    old = done_run(models, account, "a" * 64, cleared={}, cleared_to_bank=1000)  # before 0003: main currency only
    clearing(account, "a" * 64, "CNY", 1000)
    clearing(account, "a" * 64, "USD", 250)
    newer = done_run(models, account, "b" * 64, cleared={"CNY": -40}, cleared_to_bank=-40)  # after 0003
    clearing(account, "b" * 64, "CNY", -40)
    nothing = done_run(models, account, "c" * 64, cleared={})  # a file that moved nothing
    failed = done_run(models, account, "d" * 64, cleared={})
    ReconRun.objects.filter(pk=failed.pk).update(status=ReconRunStatus.FAILED)
    channel_settlement_post(reference="discrepancy:1", livemode=False, channel_account_id=account.pk,
                            currency="CNY", amount=70)  # fmt: skip

    migrate(BACKFILL)

    cleared = dict(ReconRun.objects.values_list("pk", "cleared"))
    assert cleared == {old.pk: {"CNY": 1000, "USD": 250}, newer.pk: {"CNY": -40}, nothing.pk: {}, failed.pk: {}}


@pytest.mark.parametrize("kit", ["alipay"], indirect=True)
def test_a_day_run_before_0003_is_not_moved_to_bank_again_by_a_newer_file(kit, day_of_business, latest_schema):
    day = day_of_business["day"]
    first = recon_run(account=kit.account, day=day)
    ReconRun.objects.filter(pk=first.pk).update(cleared={})  # what a run done before 0003 has
    migrate(BEFORE)
    migrate(BACKFILL)
    assert ReconRun.objects.values_list("cleared", flat=True).get(pk=first.pk) == {"CNY": DAY_NET}
    migrate()
    entries = clearing_entries()

    second = recon_run(account=kit.account, day=day, bill=upload(kit, day, kit.reissued(kit.corrected_bill(day)), "b"))

    assert (second.matched, second.cleared, second.cleared_to_bank) == (5, {}, 0)
    assert clearing_entries() == entries
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET, 0)
    ledger_ok()
