import json

from django.contrib import admin
from django.utils.html import format_html

from apps.core.admin_fsm import ServiceTransitionAdminMixin
from apps.payments.models import Charge, ChargeTransition


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
    fsm_services = {}
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

    @admin.display(description="exception detail")
    def exception_detail_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.exception_detail, indent=2, ensure_ascii=False))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
