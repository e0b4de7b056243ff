"""The reconciliation console: manual upload, flags, discrepancy actions, finance exports."""

import io

import pytest
from django.contrib.auth.models import User

from apps.ledger.models import Posting
from apps.reconciliation.bills import bill_download, bill_path
from apps.reconciliation.models import BillFile, Discrepancy, DiscrepancyAction, ReconRun

pytestmark = pytest.mark.parametrize("kit", ["alipay"], indirect=True)


def finance_user(name: str, finance_group) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.groups.add(finance_group)
    return user


def test_finance_uploads_a_bill_acts_on_a_discrepancy_and_exports(client, kit, day_of_business, finance_group):
    account = kit.account
    day = day_of_business["day"]
    kit.missing_line(day_of_business["charges"][1])
    fetched, _ = bill_download(account=account, day=day)
    content = bill_path(fetched).read_bytes()
    fetched.delete()
    client.force_login(finance_user("fiona", finance_group))

    upload = io.BytesIO(content)
    upload.name = "bill.csv.zip"
    response = client.post("/admin/reconciliation/billfile/upload/",
                           {"account": account.pk, "day": day.isoformat(), "file": upload})  # fmt: skip
    assert response.status_code == 302
    assert BillFile.objects.get().source == "upload"
    assert ReconRun.objects.get().channel_missing == 1
    d = Discrepancy.objects.get()

    action = {"action": "investigate", "_selected_action": [d.pk]}
    assert client.post("/admin/reconciliation/discrepancy/", action).status_code == 302
    assert list(DiscrepancyAction.objects.values_list("action", "by")) == [("investigate", "admin:fiona")]
    assert client.get(f"/admin/reconciliation/discrepancy/{d.pk}/change/").status_code == 200

    columns = ["id", "kind", "ref", "difference"]
    form = {"format": 0, "resource": 0, **{f"discrepancyresource_{c}": "on" for c in columns}}
    exported = client.post("/admin/reconciliation/discrepancy/export/", form)
    assert exported.status_code == 200
    assert exported.content.decode().splitlines()[1] == f"{d.pk},channel_missing,{d.ref},-50"


def test_finance_resolves_a_duplicate_line_in_the_console(client, kit, day_of_business, finance_group):
    day, charge = day_of_business["day"], day_of_business["charges"][0]
    client.force_login(finance_user("fiona", finance_group))
    upload = io.BytesIO(kit.repeated(kit.corrected_bill(day), charge))
    upload.name = "bill.csv.zip"
    client.post("/admin/reconciliation/billfile/upload/",
                {"account": kit.account.pk, "day": day.isoformat(), "file": upload})  # fmt: skip
    d = Discrepancy.objects.get()
    assert (d.kind, d.ref, ReconRun.objects.get().duplicate_line) == ("duplicate_line", charge, 1)
    assert d.ref.encode() in client.get("/admin/reconciliation/discrepancy/?kind__exact=duplicate_line").content
    postings = Posting.objects.count()

    action = {"action": "resolve_duplicate", "_selected_action": [d.pk]}
    assert client.post("/admin/reconciliation/discrepancy/", action).status_code == 302

    d.refresh_from_db()
    assert (d.status, d.settled) == ("resolved", None)
    assert list(DiscrepancyAction.objects.values_list("action", "by")) == [("resolve_duplicate", "admin:fiona")]
    assert Posting.objects.count() == postings


def test_a_bad_upload_is_flagged_in_the_console(client, kit, day_of_business, finance_group):
    account = kit.account
    client.force_login(finance_user("fiona", finance_group))
    upload = io.BytesIO(b"<html>expired link</html>")
    upload.name = "bill.csv.zip"

    client.post("/admin/reconciliation/billfile/upload/",
                {"account": account.pk, "day": day_of_business["day"].isoformat(), "file": upload})  # fmt: skip

    bill = BillFile.objects.get()
    assert (bill.status, bill.error) == ("invalid", "alipay bill: not a readable zip archive (File is not a zip file)")
    listing = client.get("/admin/reconciliation/billfile/?status__exact=invalid")
    assert bill.file_name.encode() in listing.content
    assert ReconRun.objects.get().status == "failed"


def test_staff_outside_finance_cannot_export(client, kit):
    User.objects.create_user("sam", password="pw", is_staff=True)
    client.login(username="sam", password="pw")
    assert client.get("/admin/reconciliation/discrepancy/export/").status_code == 403
