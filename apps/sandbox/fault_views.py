"""The fault console: the injected faults of every sandbox, and a form to add or disable one."""

import json

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.sandbox import selectors, services
from apps.sandbox.faults import fault_set
from apps.sandbox.models import FaultKind

PROVIDERS = [("alipay", "alipay"), ("wechatpay", "wechatpay"), ("unionpay", "unionpay")]


class FaultForm(forms.Form):
    provider = forms.ChoiceField(choices=PROVIDERS)
    merchant_ref = forms.CharField(max_length=64, required=False, help_text="app_id / mchid / merId; empty = all")
    out_trade_no = forms.CharField(max_length=64, required=False, help_text="one payment; empty = all")
    kind = forms.ChoiceField(choices=FaultKind.choices)
    params = forms.CharField(required=False, initial="{}", widget=forms.Textarea(attrs={"rows": 2, "cols": 40}))
    remaining = forms.IntegerField(min_value=1, required=False, help_text="fires this many times; empty = until off")

    def clean_params(self) -> dict:
        text = (self.cleaned_data.get("params") or "").strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("params must be a JSON object")
        return value


@require_http_methods(["GET", "POST"])
def fault_console(request: HttpRequest) -> HttpResponse:
    """GET lists the faults; POST action=add creates one, action=disable turns one off."""
    form = FaultForm()
    if request.method == "POST":
        if request.POST.get("action") == "disable":
            fault_id = request.POST.get("id", "")
            if fault_id.isdigit() and services.sandbox_fault_disable(fault_id=int(fault_id)):
                messages.success(request, f"fault {fault_id} disabled")
            return redirect("sandbox:faults")
        form = FaultForm(request.POST)
        if form.is_valid():
            fault = fault_set(**form.cleaned_data)
            messages.success(request, f"fault {fault.id} added: {fault}")
            return redirect("sandbox:faults")
    status = 400 if form.is_bound else 200
    return render(
        request, "sandbox/faults.html", {"form": form, "faults": selectors.sandbox_faults_recent()}, status=status
    )
