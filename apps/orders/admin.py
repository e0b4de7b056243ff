from django.contrib import admin

from apps.core.admin_fsm import ServiceTransitionAdminMixin
from apps.orders.models import Order, OrderTransition


class OrderTransitionInline(admin.TabularInline):
    model = OrderTransition
    fields = ["source", "target", "by", "request_id", "at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ServiceTransitionAdminMixin, admin.ModelAdmin):
    fsm_fields = ["status"]
    fsm_services = {}  # orders change state through their charges
    list_display = ["order_no", "app", "livemode", "amount", "status", "created_at", "paid_at"]
    list_filter = ["status", "livemode"]
    search_fields = ["order_no", "app__public_id"]
    readonly_fields = [
        "app",
        "order_no",
        "livemode",
        "amount",
        "subject",
        "body",
        "status",
        "paid_at",
        "closed_at",
        "request_id",
        "created_at",
    ]
    fields = readonly_fields
    inlines = [OrderTransitionInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
