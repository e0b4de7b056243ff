import json

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.urls import path, reverse
from django.utils.html import format_html

from apps.channels import health_views
from apps.channels.models import ChannelAccount


class ChannelAccountForm(forms.ModelForm):
    """Credentials are write-only: the stored secrets are never rendered back into the page."""

    new_credentials = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="JSON object; leave empty to keep the stored credentials. Stored values are never shown.",
    )

    class Meta:
        model = ChannelAccount
        fields = ["name", "provider", "base_url", "methods", "currencies", "livemode", "enabled", "priority"]

    def clean_new_credentials(self):
        raw = self.cleaned_data["new_credentials"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("credentials must be a JSON object")
        return value

    def save(self, commit=True):
        if self.cleaned_data.get("new_credentials") is not None:
            self.instance.credentials = self.cleaned_data["new_credentials"]
        return super().save(commit)


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    form = ChannelAccountForm
    change_list_template = "channels/channelaccount_change_list.html"
    list_display = ["name", "provider", "livemode", "enabled", "priority", "methods", "base_url", "health_link"]
    list_filter = ["provider", "livemode", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["credential_keys", "created_at", "health_link"]

    @admin.display(description="stored credential fields")
    def credential_keys(self, obj):
        return ", ".join(sorted(obj.credentials)) if obj and obj.credentials else "—"

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="health")
    def health_link(self, obj):
        if not obj or not obj.pk:
            return "—"
        return format_html(
            '<a href="{}">channel health</a>', reverse("admin:channels_channelaccount_health", args=[obj.pk])
        )

    def get_urls(self):
        def view(func):
            def wrapped(request, *args, **kw):
                if not self.has_view_permission(request):
                    raise PermissionDenied
                return func(request, *args, model_admin=self, **kw)

            return self.admin_site.admin_view(wrapped)

        return [
            path("health/", view(health_views.health_overview), name="channels_channelaccount_health_overview"),
            path("<int:account_id>/health/", view(health_views.health_detail), name="channels_channelaccount_health"),
            *super().get_urls(),
        ]
