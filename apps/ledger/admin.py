"""The ledger console: read-only accounts, entries and postings; the trial balance (CSV/XLSX);
merchant statements; fee plans and settlement schedules; maker-checker adjustments."""

from datetime import date, timedelta

import tablib
from django import forms
from django.contrib import admin
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from import_export import fields, resources
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from apps.core.admin_fsm import ServiceTransitionAdminMixin
from apps.ledger import adjustments
from apps.ledger.daycut import accounting_date_for
from apps.ledger.models import (
    Account,
    AccountingDay,
    AccountType,
    Adjustment,
    AdjustmentLine,
    AdjustmentStatus,
    AdjustmentTransition,
    FeePlan,
    JournalEntry,
    Posting,
    SettlementSchedule,
    TrialBalanceLine,
)
from apps.ledger.selectors import account_balance, merchant_statement


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is append-only: the console shows it and never edits it."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["pk", "type", "owner_id", "currency", "livemode", "normal_side", "may_go_negative",
                    "slot_count", "balance", "created_at"]  # fmt: skip
    list_filter = ["type", "currency", "livemode", "may_go_negative"]
    search_fields = ["=owner_id", "=id"]
    fields = ["livemode", "type", "owner_id", "currency", "normal_side", "may_go_negative", "slot_count",
              "balance", "created_at"]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="balance (minor units, normal side)")
    def balance(self, obj: Account) -> int:
        return account_balance(account=obj)

    def get_urls(self):
        return [
            path("statement/", self.admin_site.admin_view(self.statement_view), name="ledger_merchant_statement"),
            *super().get_urls(),
        ]

    def statement_view(self, request):
        """A merchant statement: postings over a period with the running balance (CSV/XLSX)."""
        form = StatementForm(request.GET or None)
        context = {**self.admin_site.each_context(request), "title": "Merchant statement", "form": form}
        if form.is_valid():
            data = form.cleaned_data
            statement = merchant_statement(
                merchant_id=data["merchant_id"],
                livemode=data["livemode"],
                currency=data["currency"].upper(),
                account_type=data["account_type"],
                date_from=data["date_from"],
                date_to=data["date_to"],
            )
            export = request.GET.get("export")
            if export in ("csv", "xlsx"):
                return _statement_download(statement, data, export)
            context["statement"] = statement
        return TemplateResponse(request, "admin/ledger/statement.html", context)


class StatementForm(forms.Form):
    merchant_id = forms.IntegerField(min_value=1)
    currency = forms.CharField(max_length=3, initial="CNY")
    livemode = forms.BooleanField(required=False, initial=True)
    account_type = forms.ChoiceField(
        choices=[(AccountType.MERCHANT_PENDING, "pending"), (AccountType.MERCHANT_AVAILABLE, "available")]
    )
    date_from = forms.DateField(initial=lambda: accounting_date_for(timezone.now()) - timedelta(days=30))
    date_to = forms.DateField(initial=lambda: accounting_date_for(timezone.now()))


def _statement_download(statement, data: dict, export: str) -> HttpResponse:
    dataset = tablib.Dataset(headers=["accounting_date", "entry", "event_type", "reference", "debit", "credit",
                                      "balance"])  # fmt: skip
    dataset.append([data["date_from"].isoformat(), "", "opening balance", "", "", "", statement.opening])
    for line in statement.lines:
        dataset.append([line.accounting_date.isoformat(), line.entry_id, line.event_type, line.reference,
                        line.debit, line.credit, line.balance])  # fmt: skip
    name = f"statement-{data['merchant_id']}-{data['currency']}-{data['date_from']}-{data['date_to']}.{export}"
    if export == "csv":
        response = HttpResponse(dataset.export("csv"), content_type="text/csv")
    else:
        response = HttpResponse(
            dataset.export("xlsx"), content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


class PostingInline(admin.TabularInline):
    model = Posting
    fields = ["account", "amount", "currency"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ["pk", "event_type", "reference", "livemode", "accounting_date", "merchant_id",
                    "channel_account_id", "occurred_at"]  # fmt: skip
    list_filter = ["event_type", "livemode", "accounting_date"]
    search_fields = ["reference", "=merchant_id", "=channel_account_id"]
    date_hierarchy = "accounting_date"
    fields = ["event_type", "reference", "livemode", "accounting_date", "occurred_at", "merchant_id",
              "channel_account_id", "description", "created_at"]  # fmt: skip
    readonly_fields = fields
    inlines = [PostingInline]


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ["pk", "entry", "account", "amount", "currency", "accounting_date"]
    list_filter = ["currency", "account__type", "entry__event_type", "entry__livemode", "entry__accounting_date"]
    search_fields = ["entry__reference", "=account__owner_id"]
    list_select_related = ["entry", "account"]
    fields = ["entry", "account", "amount", "currency"]
    readonly_fields = fields

    @admin.display(ordering="entry__accounting_date")
    def accounting_date(self, obj: Posting) -> date:
        return obj.entry.accounting_date


class TrialBalanceResource(resources.ModelResource):
    book = fields.Field(column_name="book")

    class Meta:
        model = TrialBalanceLine
        fields = ["date", "book", "account_type", "currency", "opening", "debits", "credits", "closing"]
        export_order = fields

    def dehydrate_book(self, line: TrialBalanceLine) -> str:
        return "live" if line.livemode else "test"


@admin.register(TrialBalanceLine)
class TrialBalanceLineAdmin(ExportMixin, ReadOnlyAdmin):
    """The daily trial balance (stored when a day closes), exportable as CSV or XLSX."""

    resource_classes = [TrialBalanceResource]
    export_formats = [CSV, XLSX]
    list_display = ["date", "livemode", "account_type", "currency", "opening", "debits", "credits", "closing"]
    list_filter = ["date", "livemode", "currency", "account_type"]
    date_hierarchy = "date"

    def has_export_permission(self, request):
        return request.user.is_active and request.user.is_staff


@admin.register(AccountingDay)
class AccountingDayAdmin(ReadOnlyAdmin):
    list_display = ["date", "closed_at", "closed_by"]


@admin.register(FeePlan)
class FeePlanAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "owner_type", "owner_id", "currency", "rate", "fixed", "minimum", "maximum",
                    "rounding", "refund_returns_fee", "active"]  # fmt: skip
    list_filter = ["kind", "owner_type", "currency", "active"]
    search_fields = ["name", "=owner_id"]


@admin.register(SettlementSchedule)
class SettlementScheduleAdmin(admin.ModelAdmin):
    list_display = ["merchant", "delay_days", "enabled"]
    list_select_related = ["merchant"]


class AdjustmentLineInline(admin.TabularInline):
    model = AdjustmentLine
    fields = ["account_type", "owner_id", "currency", "amount"]
    extra = 2

    def has_change_permission(self, request, obj=None):
        return obj is None or obj.status == AdjustmentStatus.DRAFT

    def has_add_permission(self, request, obj=None):
        return obj is None or obj.status == AdjustmentStatus.DRAFT

    def has_delete_permission(self, request, obj=None):
        return obj is not None and obj.status == AdjustmentStatus.DRAFT


class AdjustmentTransitionInline(admin.TabularInline):
    model = AdjustmentTransition
    fields = ["source", "target", "by", "at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _by(request) -> str:
    """Staff identity as the console's transition buttons report it (ServiceTransitionAdminMixin)."""
    return f"admin:{request.user.get_username()}"


def _approve(*, obj: Adjustment, by: str) -> None:
    adjustments.adjustment_approve(adjustment_id=obj.pk, checker=by)


def _reject(*, obj: Adjustment, by: str) -> None:
    adjustments.adjustment_reject(adjustment_id=obj.pk, checker=by)


@admin.register(Adjustment)
class AdjustmentAdmin(ServiceTransitionAdminMixin, admin.ModelAdmin):
    """Maker-checker: the maker drafts lines (debit positive, credit negative, minor units);
    another staff member approves (posts) or rejects with the buttons."""

    fsm_fields = ["status"]
    fsm_services = {"approve": _approve, "reject": _reject}
    list_display = ["public_id", "description", "livemode", "status", "maker", "checker", "created_at"]
    list_filter = ["status", "livemode"]
    search_fields = ["public_id", "maker", "checker", "description"]
    inlines = [AdjustmentLineInline, AdjustmentTransitionInline]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["livemode", "description"]
        return ["public_id", "livemode", "description", "status", "maker", "checker", "decided_at", "entry_id"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        readonly = ["public_id", "status", "maker", "checker", "decided_at", "entry_id"]
        return readonly if obj.status == AdjustmentStatus.DRAFT else [*readonly, "livemode", "description"]

    def save_model(self, request, obj, form, change):
        # The mixin never saves (transitions go through services); a draft's own fields may be saved.
        if not change:
            obj.maker = _by(request)
            obj.save()
        elif obj.status == AdjustmentStatus.DRAFT and form.has_changed():
            obj.save(update_fields=form.changed_data)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change:
            AdjustmentTransition.objects.create(
                adjustment=form.instance, source="", target=form.instance.status, by=_by(request)
            )

    def has_delete_permission(self, request, obj=None):
        return False
