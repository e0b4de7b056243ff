import json

from django.contrib import admin, messages
from django.utils.html import format_html

from apps.core.admin_fsm import ServiceTransitionAdminMixin
from apps.core.errors import PaysysError
from apps.payments import queries, refunds, services
from apps.payments.models import Charge, ChargeTransition, NotificationProblem, Refund, RefundTransition
from apps.routing.admin import decision_html


class ChargeTransitionInline(admin.TabularInline):
    model = ChargeTransition
    fields = ["at", "source", "target", "by", "request_id", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Charge)
class ChargeAdmin(ServiceTransitionAdminMixin, admin.ModelAdmin):
    fsm_fields = ["status"]
    fsm_services = {"close": lambda *, obj, by: queries.charge_expire(charge_id=obj.pk, by=by)}
    actions = ["query_now", "accept_amount_mismatch", "refund_amount_mismatch", "refund_paid_after_close"]
    list_display = ["public_id", "app", "livemode", "channel", "amount", "status", "exception", "created_at"]
    list_filter = ["status", "livemode", "channel", "exception"]
    search_fields = ["public_id", "order__order_no", "transaction_no", "request_id"]
    date_hierarchy = "created_at"
    list_select_related = ["app"]
    readonly_fields = [
        "public_id",
        "app",
        "order",
        "livemode",
        "channel",
        "channel_account",
        "amount",
        "status",
        "exception",
        "exception_detail_pretty",
        "client_ip",
        "subject",
        "body",
        "description",
        "transaction_no",
        "time_expire",
        "paid_at",
        "closed_at",
        "failure_code",
        "failure_msg",
        "metadata",
        "extra",
        "request_id",
        "created_at",
    ]
    fields = readonly_fields
    inlines = [ChargeTransitionInline]

    @admin.action(description="Query the channel now")
    def query_now(self, request, queryset):
        for charge in queryset[:100]:
            result = queries.charge_query(charge_id=charge.pk)
            self.message_user(request, f"{result.public_id}: {result.status}")

    @admin.action(description="Amount mismatch: accept as paid (with the amount received)")
    def accept_amount_mismatch(self, request, queryset):
        self._resolve(request, queryset, "accepted", services.charge_resolve_amount_mismatch, accept=True)

    @admin.action(description="Amount mismatch: refund what was received")
    def refund_amount_mismatch(self, request, queryset):
        self._resolve(request, queryset, "refunded", services.charge_resolve_amount_mismatch, accept=False)

    @admin.action(description="Paid after close: refund what was received")
    def refund_paid_after_close(self, request, queryset):
        self._resolve(request, queryset, "refunded", services.charge_refund_paid_after_close)

    def _resolve(self, request, queryset, done: str, resolution, **options):
        for charge in queryset[:100]:
            try:
                resolution(charge_id=charge.pk, by=f"admin:{request.user.get_username()}", **options)
            except PaysysError as exc:
                self.message_user(request, f"{charge.public_id}: {exc.message}", level=messages.ERROR)
            else:
                self.message_user(request, f"{charge.public_id}: {done}")

    @admin.display(description="routing decision")
    def routing_decision(self, obj):
        return decision_html(obj.public_id)

    @admin.display(description="exception detail")
    def exception_detail_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.exception_detail, indent=2, ensure_ascii=False))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RefundTransitionInline(admin.TabularInline):
    model = RefundTransition
    fields = ["at", "source", "target", "by", "request_id", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


def _retry_refund(*, obj, by):
    refunds.refund_retry(refund_id=obj.pk, by=by)


@admin.register(Refund)
class RefundAdmin(ServiceTransitionAdminMixin, admin.ModelAdmin):
    fsm_fields = ["status"]
    fsm_services = {"retry": _retry_refund}
    list_display = ["public_id", "charge", "amount", "status", "automatic", "failure_code", "created_at"]
    list_filter = ["status", "automatic"]
    search_fields = ["public_id", "charge__public_id", "transaction_no", "request_id"]
    list_select_related = ["charge"]
    readonly_fields = [
        "public_id", "charge", "amount", "status", "automatic", "description", "metadata", "transaction_no",
        "failure_code", "failure_msg", "succeeded_at", "submitted_at", "next_query_at", "query_attempts",
        "request_id", "created_at",
    ]  # fmt: skip
    fields = readonly_fields
    inlines = [RefundTransitionInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(NotificationProblem)
class NotificationProblemAdmin(admin.ModelAdmin):
    list_display = ["received_at", "kind", "provider", "channel_account", "reference", "detail", "resolved"]
    list_filter = ["kind", "provider", "resolved"]
    search_fields = ["reference", "request_id"]
    readonly_fields = ["kind", "provider", "channel_account", "reference", "detail", "request_id", "received_at"]
    fields = [*readonly_fields, "resolved"]

    def has_add_permission(self, request):
        return False
