"""Read-mostly views of the sandbox's records. Private keys are never shown."""

from django.contrib import admin

from apps.sandbox.models import AlipayApp, AlipayNotification, AlipayRefund, AlipayTrade, SandboxFault


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AlipayApp)
class AlipayAppAdmin(ReadOnlyAdmin):
    list_display = ["app_id", "name", "seller_id", "created_at"]
    search_fields = ["app_id", "name"]
    # alipay_private_key_pem is deliberately absent.
    fields = ["app_id", "name", "seller_id", "created_at", "app_public_key_pem", "alipay_public_key_pem"]
    readonly_fields = fields


class AlipayNotificationInline(admin.TabularInline):
    model = AlipayNotification
    fields = ["notify_id", "trade_status", "attempts", "delivered_at", "last_attempt_at", "last_result"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AlipayTrade)
class AlipayTradeAdmin(ReadOnlyAdmin):
    list_display = ["out_trade_no", "trade_no", "app", "total_amount", "status", "scanned", "created_at"]
    list_filter = ["status", "scanned"]
    search_fields = ["out_trade_no", "trade_no", "app__app_id"]
    list_select_related = ["app"]
    readonly_fields = [
        "app", "out_trade_no", "trade_no", "total_amount", "subject", "body", "status", "scanned", "notify_url",
        "buyer_logon_id", "buyer_user_id", "created_at", "expires_at", "scanned_at", "paid_at", "closed_at",
    ]  # fmt: skip
    exclude = ["pay_token"]
    inlines = [AlipayNotificationInline]


@admin.register(AlipayNotification)
class AlipayNotificationAdmin(ReadOnlyAdmin):
    list_display = ["notify_id", "trade", "trade_status", "attempts", "delivered_at", "created_at"]
    list_filter = ["trade_status"]
    search_fields = ["notify_id", "trade__out_trade_no"]
    list_select_related = ["trade"]
    readonly_fields = [
        "trade", "notify_id", "trade_status", "notify_url", "fields", "attempts", "delivered_at",
        "last_attempt_at", "last_result", "created_at",
    ]  # fmt: skip


class AlipayRefundInline(admin.TabularInline):
    model = AlipayRefund
    fields = ["out_request_no", "refund_amount", "refund_reason", "refunded_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


AlipayTradeAdmin.inlines = [AlipayRefundInline, *AlipayTradeAdmin.inlines]


@admin.register(SandboxFault)
class SandboxFaultAdmin(admin.ModelAdmin):
    """Faults are configuration of the simulator: editable here as in the console (/sandbox/faults/)."""

    list_display = ["id", "provider", "kind", "merchant_ref", "out_trade_no", "params", "remaining", "fired", "enabled"]
    list_filter = ["provider", "kind", "enabled"]
    search_fields = ["merchant_ref", "out_trade_no"]
    readonly_fields = ["fired", "created_at"]
    actions = ["disable"]

    @admin.action(description="Disable the selected faults")
    def disable(self, request, queryset):
        queryset.update(enabled=False)
