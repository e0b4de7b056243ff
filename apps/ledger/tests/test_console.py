"""The ledger console: read-only lists, trial balance export (CSV/XLSX), statements, maker-checker."""

import io
from datetime import timedelta

import openpyxl
import pytest
from django.utils import timezone

from apps.ledger import services
from apps.ledger.daycut import accounting_date_for
from apps.ledger.models import Adjustment, JournalEntry
from apps.ledger.tests.helpers import available, post_payment


@pytest.fixture
def staff(django_user_model):
    def make(username: str):
        return django_user_model.objects.create_superuser(username=username, password="pw", email=f"{username}@x.cn")

    return make


@pytest.mark.django_db
def test_ledger_lists_are_read_only_and_filterable(client, staff):
    client.force_login(staff("alice"))
    post_payment("ch_console")

    for url in ["/admin/ledger/account/?type=merchant_pending", "/admin/ledger/journalentry/?q=ch_console",
                "/admin/ledger/posting/?currency=CNY"]:  # fmt: skip
        assert client.get(url).status_code == 200
    assert client.get("/admin/ledger/journalentry/add/").status_code == 403
    entry = JournalEntry.objects.get()
    assert b"ch_console" in client.get(f"/admin/ledger/journalentry/{entry.pk}/change/").content


@pytest.mark.django_db
@pytest.mark.parametrize("file_format", [pytest.param(0, id="csv"), pytest.param(1, id="xlsx")])
def test_trial_balance_exports(client, staff, file_format):
    client.force_login(staff("alice"))
    post_payment("ch_1", occurred_at=timezone.now() - timedelta(days=1))
    services.ledger_days_close_due(by="test")

    columns = ["date", "book", "account_type", "currency", "opening", "debits", "credits", "closing"]
    form = {"format": file_format, "resource": 0, **{f"trialbalanceresource_{c}": "on" for c in columns}}

    response = client.post("/admin/ledger/trialbalanceline/export/", form)

    assert response.status_code == 200
    if file_format == 0:
        text = response.content.decode()
        assert text.splitlines()[0] == "date,book,account_type,currency,opening,debits,credits,closing"
        assert ",live,merchant_pending,CNY,0,0,9940,-9940" in text
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
        assert rows[0] == ["date", "book", "account_type", "currency", "opening", "debits", "credits", "closing"]
        assert any(row[2] == "merchant_pending" and row[6] == 9940 for row in rows[1:])


@pytest.mark.django_db
@pytest.mark.parametrize("export", ["", "csv", "xlsx"])
def test_merchant_statement_view_and_downloads(client, staff, export):
    client.force_login(staff("alice"))
    post_payment("ch_1")
    today = accounting_date_for(timezone.now()).isoformat()
    query = {"merchant_id": 1, "currency": "CNY", "livemode": "on", "account_type": "merchant_pending",
             "date_from": today, "date_to": today}  # fmt: skip
    if export:
        query["export"] = export

    response = client.get("/admin/ledger/account/statement/", query)

    assert response.status_code == 200
    if export == "csv":
        assert response.content.decode().splitlines()[2].endswith(",ch_1,0,9940,9940")
    elif export == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        assert [c.value for c in sheet[3]][3:] == ["ch_1", 0, 9940, 9940]
    else:
        assert b"ch_1" in response.content and b"9940" in response.content


@pytest.mark.django_db
def test_maker_checker_through_the_console(client, staff):
    alice, bob = staff("alice"), staff("bob")
    client.force_login(alice)
    form = {
        "livemode": "on", "description": "bank fee refund",
        "lines-TOTAL_FORMS": 2, "lines-INITIAL_FORMS": 0, "lines-MIN_NUM_FORMS": 0, "lines-MAX_NUM_FORMS": 1000,
        "lines-0-account_type": "suspense", "lines-0-owner_id": 0, "lines-0-currency": "CNY", "lines-0-amount": 800,
        "lines-1-account_type": "merchant_available", "lines-1-owner_id": 1, "lines-1-currency": "CNY",
        "lines-1-amount": -800,
        "transitions-TOTAL_FORMS": 0, "transitions-INITIAL_FORMS": 0, "transitions-MIN_NUM_FORMS": 0,
        "transitions-MAX_NUM_FORMS": 1000,
    }  # fmt: skip
    response = client.post("/admin/ledger/adjustment/add/", form)
    assert response.status_code == 302, response.content[:2000]
    adjustment = Adjustment.objects.get()
    assert (adjustment.maker, adjustment.status, adjustment.lines.count()) == ("admin:alice", "draft", 2)

    client.post(f"/admin/ledger/adjustment/{adjustment.pk}/change/", _change_form(adjustment, "approve"))
    adjustment.refresh_from_db()
    assert adjustment.status == "draft"  # the maker cannot approve
    assert JournalEntry.objects.count() == 0

    client.force_login(bob)
    client.post(f"/admin/ledger/adjustment/{adjustment.pk}/change/", _change_form(adjustment, "approve"))
    adjustment.refresh_from_db()
    assert (adjustment.status, adjustment.checker) == ("approved", "admin:bob")
    assert available() == 800


def _change_form(adjustment: Adjustment, transition: str) -> dict:
    """The change form as the browser posts it, with a transition button pressed."""
    form = {"livemode": "on", "description": adjustment.description, "_fsm_transition_to": transition}
    lines = list(adjustment.lines.order_by("pk"))
    form.update({"lines-TOTAL_FORMS": len(lines), "lines-INITIAL_FORMS": len(lines), "lines-MIN_NUM_FORMS": 0,
                 "lines-MAX_NUM_FORMS": 1000})  # fmt: skip
    for i, line in enumerate(lines):
        form.update({f"lines-{i}-id": line.pk, f"lines-{i}-adjustment": adjustment.pk,
                     f"lines-{i}-account_type": line.account_type, f"lines-{i}-owner_id": line.owner_id,
                     f"lines-{i}-currency": line.currency, f"lines-{i}-amount": line.amount})  # fmt: skip
    transitions = list(adjustment.transitions.order_by("pk"))
    form.update({"transitions-TOTAL_FORMS": len(transitions), "transitions-INITIAL_FORMS": len(transitions),
                 "transitions-MIN_NUM_FORMS": 0, "transitions-MAX_NUM_FORMS": 1000})  # fmt: skip
    for i, row in enumerate(transitions):
        form.update({f"transitions-{i}-id": row.pk, f"transitions-{i}-adjustment": adjustment.pk})
    return form
