import json

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html
from django_fsm.admin import FSMAdminMixin

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
class WebhookDeliveryAdmin(FSMAdminMixin, admin.ModelAdmin):
    """State changes only through the services: the Resend button and action call the resend service."""

    fsm_fields = ["status"]
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

    def response_change(self, request, obj):
        # The transition buttons post `_fsm_transition_to`; route them through the service (audit row,
        # enqueue on commit) instead of django-fsm's default of calling the method and saving.
        transition_name = request.POST.get(self.fsm_post_param)
        if not transition_name:
            return super().response_change(request, obj)
        if transition_name != "resend":
            self.message_user(request, f"'{transition_name}' is not a console action.", messages.ERROR)
        else:
            try:
                webhook_delivery_resend(delivery_id=obj.pk, by=_by(request))
            except WebhookDeliveryNotResendable as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, "The delivery is pending and will be sent now.", messages.SUCCESS)
        return HttpResponseRedirect(request.path)

    def save_model(self, request, obj, form, change):
        # Nothing here is editable; saving the (possibly stale) row would race the sender.
        pass

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
