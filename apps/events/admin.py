import json

from django.contrib import admin, messages
from django.utils.html import format_html

from apps.core.admin_fsm import ServiceTransitionAdminMixin
from apps.events.exceptions import WebhookDeliveryNotResendable
from apps.events.models import Event, WebhookDelivery, WebhookDeliveryTransition
from apps.events.services import webhook_delivery_resend


def _by(request) -> str:
    return f"admin:{request.user.get_username()}"


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["endpoint", "status", "attempts", "next_attempt_at", "last_status_code", "last_error", "delivered_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["public_id", "type", "app", "livemode", "created_at"]
    list_filter = ["type", "livemode", "created_at"]
    list_select_related = ["app"]
    search_fields = ["public_id", "app__public_id", "request_id"]
    date_hierarchy = "created_at"
    fields = ["public_id", "app", "type", "livemode", "request_id", "created_at", "wire"]
    readonly_fields = fields
    inlines = [WebhookDeliveryInline]

    @admin.display(description="body (as sent)")
    def wire(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class WebhookDeliveryTransitionInline(admin.TabularInline):
    model = WebhookDeliveryTransition
    fields = ["source", "target", "by", "request_id", "at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ServiceTransitionAdminMixin, admin.ModelAdmin):
    """State changes only through the services: the Resend button and action call the resend service."""

    fsm_fields = ["status"]
    fsm_services = {"resend": lambda *, obj, by: webhook_delivery_resend(delivery_id=obj.pk, by=by)}
    list_display = [
        "pk", "event", "endpoint", "status", "attempts", "next_attempt_at", "last_status_code", "last_attempt_at",
    ]  # fmt: skip
    list_filter = ["status"]
    list_select_related = ["event", "endpoint"]
    search_fields = ["event__public_id", "endpoint__url", "request_id"]
    readonly_fields = [
        "event", "endpoint", "status", "attempts", "next_attempt_at", "queued_until", "last_attempt_at",
        "last_status_code", "last_error", "delivered_at", "request_id", "created_at",
    ]  # fmt: skip
    fields = readonly_fields
    inlines = [WebhookDeliveryTransitionInline]
    actions = ["resend_selected"]

    @admin.action(description="Resend selected deliveries")
    def resend_selected(self, request, queryset):
        resent = skipped = 0
        for delivery_id in queryset.values_list("pk", flat=True):
            try:
                webhook_delivery_resend(delivery_id=delivery_id, by=_by(request))
            except WebhookDeliveryNotResendable:
                skipped += 1
            else:
                resent += 1
        self.message_user(request, f"Resent {resent} deliveries.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped} that are not failing or dead.", messages.WARNING)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
