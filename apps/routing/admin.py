"""The routing console: policies, strategies, BINs, breakers, decisions and the what-if page.

`decision_html(charge_id)` renders a charge's decision record for other consoles (the charge page).
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.channels.catalog import METHOD_PROVIDERS
from apps.core.money import from_minor
from apps.merchants.models import App
from apps.routing import selectors
from apps.routing.cards import Card, card_fingerprint
from apps.routing.models import (
    CardBin,
    CircuitBreaker,
    DailyCounter,
    MaintenanceWindow,
    RouteConfig,
    RoutingDecision,
    RoutingPolicy,
)
from apps.routing.services import breakers_close, route_plan


class MaintenanceWindowInline(admin.TabularInline):
    model = MaintenanceWindow
    fk_name = "account"
    extra = 0


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "account", "min_amount", "max_amount", "daily_amount_cap", "daily_count_cap", "weight", "banks",
        "provider_method",
    ]  # fmt: skip
    search_fields = ["account__name"]
    filter_horizontal = ["allowed_apps"]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ["account", "starts_at", "ends_at", "reason"]
    list_filter = ["account"]


@admin.register(RouteConfig)
class RouteConfigAdmin(admin.ModelAdmin):
    list_display = ["method", "app", "strategy", "weight_priority", "weight_cost", "weight_success", "weight_latency"]
    list_filter = ["strategy", "method"]
    change_list_template = "admin/routing/routeconfig_change_list.html"

    def get_urls(self):
        def whatif(request):
            if not self.has_view_permission(request):
                raise PermissionDenied
            return routing_whatif(request, self.admin_site)

        return [
            path("what-if/", self.admin_site.admin_view(whatif), name="routing_whatif"),
            *super().get_urls(),
        ]


@admin.register(CardBin)
class CardBinAdmin(admin.ModelAdmin):
    list_display = ["prefix", "bank", "bank_name", "card_type"]
    list_filter = ["bank", "card_type"]
    search_fields = ["prefix", "bank", "bank_name"]


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    list_display = ["account", "state", "changed_at", "reason", "probes", "probe_until"]
    list_filter = ["state"]
    readonly_fields = ["account", "changed_at", "reason", "probes", "probe_until"]
    actions = ["close_breakers"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Close the selected breakers (the account is healthy again)")
    def close_breakers(self, request, queryset):
        account_ids = list(queryset.values_list("account_id", flat=True))
        breakers_close(account_ids=account_ids, reason="closed from the console")


@admin.register(DailyCounter)
class DailyCounterAdmin(admin.ModelAdmin):
    list_display = ["account", "day", "currency", "amount", "count"]
    list_filter = ["day", "currency"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(admin.ModelAdmin):
    list_display = ["charge_id", "method", "amount", "currency", "strategy", "winner", "attempt_count", "created_at"]
    list_filter = ["method", "strategy", "livemode"]
    search_fields = ["charge_id", "=card_fingerprint", "=card_last4"]
    readonly_fields = [f.name for f in RoutingDecision._meta.fields if f.name not in ("candidates", "attempts")] + [
        "rendered"
    ]
    exclude = ["candidates", "attempts"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="attempts")
    def attempt_count(self, obj):
        return len(obj.attempts)

    @admin.display(description="decision")
    def rendered(self, obj):
        return _render(obj)


def _render(record: RoutingDecision) -> SafeString:
    return SafeString(render_to_string("admin/routing/decision.html", {"record": record}))


def decision_html(charge_id: str) -> SafeString:
    """The routing decision of a charge as an HTML fragment (for the charge's console page)."""
    record = selectors.decision_for_charge(charge_id=charge_id)
    if record is None:
        return SafeString("<p>No routing decision recorded for this charge.</p>")
    url = reverse("admin:routing_routingdecision_change", args=[record.pk])
    return format_html('{}<p><a href="{}">open the decision record</a></p>', _render(record), url)


class WhatIfForm(forms.Form):
    app = forms.ModelChoiceField(queryset=App.objects.order_by("public_id"))
    livemode = forms.BooleanField(required=False, help_text="unticked: test mode (sandbox accounts)")
    method = forms.ChoiceField(choices=[(m, m) for m in sorted(METHOD_PROVIDERS)])
    amount = forms.IntegerField(min_value=1, help_text="minor units (fen)")
    currency = forms.CharField(max_length=3, initial="CNY")
    card_number = forms.CharField(
        required=False, max_length=19, help_text="bank_card: a BIN (6–8 digits) or a test card number; never stored"
    )


def routing_whatif(request, admin_site):
    """Ranking and reasons for a hypothetical payment; reserves, records and changes nothing."""
    form = WhatIfForm(request.GET or None)
    plan = None
    if form.is_valid():
        data = form.cleaned_data
        card = None
        digits = "".join(ch for ch in data["card_number"] if ch.isdigit())
        if digits:
            card = Card(number=digits, bin=digits[:6], last4=digits[-4:], fingerprint=card_fingerprint(digits))
        plan = route_plan(
            app_id=data["app"].pk,
            livemode=data["livemode"],
            method=data["method"],
            amount=from_minor(data["amount"], data["currency"].upper()),
            card=card,
        )
    context = {
        **admin_site.each_context(request),
        "title": "Routing what-if",
        "form": form,
        "plan": plan,
        "opts": RouteConfig._meta,
    }
    return TemplateResponse(request, "admin/routing/whatif.html", context)
