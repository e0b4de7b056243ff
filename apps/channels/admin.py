import json

from django import forms
from django.contrib import admin

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
    list_display = ["name", "provider", "livemode", "enabled", "priority", "methods", "base_url"]
    list_filter = ["provider", "livemode", "enabled"]
    search_fields = ["name"]
    readonly_fields = ["credential_keys", "created_at"]

    @admin.display(description="stored credential fields")
    def credential_keys(self, obj):
        return ", ".join(sorted(obj.credentials)) if obj and obj.credentials else "—"

    def has_delete_permission(self, request, obj=None):
        return False
