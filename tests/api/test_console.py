"""The operations console: every model's pages render, state moves only by buttons, secrets never show."""

import pytest
import requests
from django.contrib import admin
from django.urls import reverse

from apps.core.models import PlatformKey
from apps.payments.models import Charge, ChargeStatus
from tests.support import charge_payload

pytestmark = pytest.mark.usefixtures("celery_eager")


@pytest.fixture
def paid_charge(api, merchant, sandbox_alipay, receiver):
    from apps.merchants.services import webhook_endpoint_create

    webhook_endpoint_create(app=merchant.app, url=receiver.url)
    response = api.post("/v1/charges", charge_payload(merchant, order_no="console0001"))
    assert response.status_code == 200, response.content
    requests.post(response.json()["credential"]["alipay_qr"], data={"result": "success"}, timeout=10)
    charge = Charge.objects.get(public_id=response.json()["id"])
    assert charge.status == ChargeStatus.SUCCEEDED
    return charge


def secrets_of(merchant, sandbox_alipay) -> list[str]:
    _account, created = sandbox_alipay
    platform_private = PlatformKey.objects.get(active=True).private_key_pem
    pem_body = lambda pem: pem.strip().splitlines()[1]  # noqa: E731 - a line of base64 is enough to spot a leak
    return [
        merchant.test_secret_key,
        merchant.live_secret_key,
        pem_body(merchant.private_pem),
        pem_body(created.app_private_key),
        pem_body(platform_private),
    ]


def admin_pages(obj_by_model):
    for model in admin.site._registry:
        opts = model._meta
        yield reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        obj = obj_by_model.get(model)
        if obj is not None:
            yield reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def test_every_console_page_renders_and_shows_no_secret(admin_client, paid_charge, merchant, sandbox_alipay):
    obj_by_model = {model: model.objects.order_by("pk").first() for model in admin.site._registry}
    leaked = secrets_of(merchant, sandbox_alipay)
    pages = list(admin_pages(obj_by_model))
    assert len(pages) > 20
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in leaked:
            assert secret not in html, f"a secret is visible on {url}"


def test_the_charge_page_offers_no_bare_state_edit(admin_client, paid_charge):
    url = reverse("admin:payments_charge_change", args=[paid_charge.pk])
    html = admin_client.get(url).content.decode()
    assert 'name="status"' not in html
    assert "succeeded" in html
    # a crafted transition POST for a transition the console does not offer changes nothing
    response = admin_client.post(url, {"_fsm_transition_to": "close"})
    assert response.status_code in (200, 302)
    assert Charge.objects.get(pk=paid_charge.pk).status == ChargeStatus.SUCCEEDED


def test_the_channel_account_form_never_renders_stored_credentials(admin_client, sandbox_alipay):
    account, _created = sandbox_alipay
    html = admin_client.get(reverse("admin:channels_channelaccount_change", args=[account.pk])).content.decode()
    assert "BEGIN PRIVATE KEY" not in html
    assert "alipay_public_key, app_id, app_private_key" in html
