"""The reconciliation console: bills (upload, flags), runs, discrepancies and their actions.

Reports export as CSV or XLSX for users with `reconciliation.export_reports` (the finance group).
"""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from apps.channels.models import ChannelAccount
from apps.core.errors import PaysysError
from apps.reconciliation import actions
from apps.reconciliation.bills import bill_upload
from apps.reconciliation.exceptions import ReconError
from apps.reconciliation.models import (
    BillDownload,
    BillFile,
    BillSchedule,
    CrossDayHold,
    Discrepancy,
    DiscrepancyAction,
    ReconRun,
)
from apps.reconciliation.resources import ChannelFeeResource, DailySummaryResource, DiscrepancyResource
from apps.reconciliation.services import recon_run


def _by(request) -> str:
    return f"admin:{request.user.get_username()}"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ExportAllowed:
    formats = [CSV, XLSX]

    def has_export_permission(self, request):
        return request.user.has_perm("reconciliation.export_reports")


class UploadForm(forms.Form):
    account = forms.ModelChoiceField(queryset=ChannelAccount.objects.order_by("name"))
    day = forms.DateField(help_text="YYYY-MM-DD")
    file = forms.FileField()


@admin.register(BillFile)
class BillFileAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "day", "file_name", "source", "status", "line_count", "error", "created_at")
    list_filter = ("status", "source", "account")
    search_fields = ("sha256", "file_name")
    actions = ["reconcile"]

    def get_urls(self):
        upload = path("upload/", self.admin_site.admin_view(self.upload_view), name="reconciliation_billfile_upload")
        return [upload, *super().get_urls()]

    def upload_view(self, request):
        if not request.user.has_perm("reconciliation.add_billfile"):
            return redirect("admin:reconciliation_billfile_changelist")
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            bill, created = bill_upload(account=data["account"], day=data["day"], file_name=data["file"].name,
                                        content=data["file"], by=_by(request))  # fmt: skip
            if not created:
                self.message_user(request, f"This file was received before (bill {bill.pk}).", messages.WARNING)
            else:
                self._reconcile(request, bill)
            return redirect("admin:reconciliation_billfile_changelist")
        context = {**self.admin_site.each_context(request), "form": form, "title": "Upload a bill file"}
        return TemplateResponse(request, "admin/reconciliation/upload.html", context)

    def _reconcile(self, request, bill: BillFile) -> None:
        try:
            run = recon_run(account=bill.account, day=bill.day, bill=bill, by=_by(request))
        except ReconError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Reconciled: run {run.pk}, {run.matched} of {run.lines} lines matched.")

    @admin.action(description="Reconcile the selected bills")
    def reconcile(self, request, queryset):
        for bill in queryset.select_related("account"):
            self._reconcile(request, bill)


@admin.register(ReconRun)
class ReconRunAdmin(ExportAllowed, ExportMixin, ReadOnlyAdmin):
    list_display = ("id", "account", "day", "status", "lines", "matched", "held", "local_missing", "channel_missing",
                    "amount_mismatch", "status_mismatch", "fee_mismatch", "duplicate_line", "bill_fee", "local_fee",
                    "platform_fee", "error")  # fmt: skip
    list_filter = ("status", "day", "account")
    resource_classes = [DailySummaryResource, ChannelFeeResource]


class DiscrepancyActionInline(admin.TabularInline):
    model = DiscrepancyAction
    extra = 0
    readonly_fields = ("action", "source", "target", "by", "detail", "at")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Discrepancy)
class DiscrepancyAdmin(ExportAllowed, ExportMixin, ReadOnlyAdmin):
    list_display = ("id", "account", "day", "kind", "item_kind", "ref", "bill_amount", "local_amount", "bill_fee",
                    "local_fee", "status", "adjustment_id")  # fmt: skip
    list_filter = ("status", "kind", "day", "account")
    search_fields = ("ref", "trade_no")
    inlines = [DiscrepancyActionInline]
    resource_classes = [DiscrepancyResource]
    actions = ["investigate", "query_channel", "correct_local", "resolve_duplicate", "write_off_request",
               "write_off_approve"]  # fmt: skip

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("reconciliation.change_discrepancy")

    def _each(self, request, queryset, fn, label: str) -> None:
        for d in queryset:
            try:
                fn(d)
            except (PaysysError, ReconError, Exception) as exc:
                self.message_user(request, f"{label} {d.pk}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{label} {d.pk}: done.")

    @admin.action(description="Investigate", permissions=["change"])
    def investigate(self, request, queryset):
        self._each(request, queryset, lambda d: actions.discrepancy_investigate(discrepancy_id=d.pk, by=_by(request)),
                   "investigate")  # fmt: skip

    @admin.action(description="Query the channel now", permissions=["change"])
    def query_channel(self, request, queryset):
        def query(d):
            return actions.discrepancy_query_channel(discrepancy_id=d.pk, by=_by(request))

        self._each(request, queryset, query, "query")

    @admin.action(description="Correct local state from the channel's answer", permissions=["change"])
    def correct_local(self, request, queryset):
        def correct(d):
            return actions.discrepancy_correct_local(discrepancy_id=d.pk, by=_by(request))

        self._each(request, queryset, correct, "correct")

    @admin.action(description="Resolve a duplicate line: the channel settles the item once (no money)",
                  permissions=["change"])  # fmt: skip
    def resolve_duplicate(self, request, queryset):
        def resolve(d):
            return actions.discrepancy_resolve_duplicate(discrepancy_id=d.pk, by=_by(request))

        self._each(request, queryset, resolve, "resolve duplicate")

    @admin.action(description="Request a write-off to suspense (maker)", permissions=["change"])
    def write_off_request(self, request, queryset):
        self._each(request, queryset,
                   lambda d: actions.discrepancy_write_off_request(discrepancy_id=d.pk, maker=_by(request)),
                   "write-off request")  # fmt: skip

    @admin.action(description="Approve the write-off (checker)", permissions=["change"])
    def write_off_approve(self, request, queryset):
        self._each(request, queryset,
                   lambda d: actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker=_by(request)),
                   "write-off approval")  # fmt: skip


@admin.register(BillDownload)
class BillDownloadAdmin(ReadOnlyAdmin):
    list_display = ("account", "day", "status", "attempts", "next_attempt_at", "deadline", "last_error")
    list_filter = ("status", "account")


@admin.register(CrossDayHold)
class CrossDayHoldAdmin(ReadOnlyAdmin):
    list_display = ("account", "day", "neighbour_day", "kind", "ref", "amount", "status", "decided_at")
    list_filter = ("status", "account")


@admin.register(BillSchedule)
class BillScheduleAdmin(admin.ModelAdmin):
    list_display = ("account", "bill_time", "working_days_only", "deadline_hours", "enabled")
