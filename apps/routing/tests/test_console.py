"""The routing console: the what-if page creates nothing; a decision renders for the charge page."""

import pytest
from django.urls import reverse

from apps.channels.models import ChannelAccount
from apps.routing.admin import decision_html
from apps.routing.cards import card_from_extra
from apps.routing.exceptions import CardInvalid
from apps.routing.models import CardBin, CircuitBreaker, DailyCounter, RoutingDecision, RoutingPolicy
from apps.routing.services import card_bins_load
from tests.support import make_merchant


@pytest.fixture
def accounts(db, settings):
    settings.PAYSYS_ROUTING_CACHE_SECONDS = 0
    card_bins_load()
    made = []
    for name, banks, priority in [("ICBC only", ["ICBC"], 5), ("CCB only", ["CCB"], 1)]:
        account = ChannelAccount.objects.create(
            name=name, provider="alipay", base_url="http://127.0.0.1:9/", methods=["bank_card", "alipay_qr"],
            currencies=["CNY"], priority=priority,
        )  # fmt: skip
        RoutingPolicy.objects.create(account=account, banks=banks, max_amount=50_000)
        made.append(account)
    return made


def test_the_what_if_page_ranks_and_explains_and_creates_nothing(admin_client, accounts):
    app = make_merchant().app
    url = reverse("admin:routing_whatif")
    response = admin_client.get(
        url, {"app": app.pk, "method": "bank_card", "amount": 100, "currency": "CNY", "card_number": "62220200"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "bank ICBC" in html and "bank_unsupported" in html
    assert html.index("ICBC only") < html.index("CCB only")  # the ranked one first
    too_big = admin_client.get(url, {"app": app.pk, "method": "alipay_qr", "amount": 60_000, "currency": "CNY"})
    assert too_big.content.decode().count("<td>above_maximum</td>") == 2
    assert (RoutingDecision.objects.count(), DailyCounter.objects.count(), CircuitBreaker.objects.count()) == (0, 0, 0)


def test_the_console_pages_render(admin_client, accounts):
    for model in ["routingpolicy", "maintenancewindow", "routeconfig", "cardbin", "circuitbreaker", "dailycounter"]:
        assert admin_client.get(reverse(f"admin:routing_{model}_changelist")).status_code == 200
    assert CardBin.objects.filter(prefix="622202", bank="ICBC").exists()


def test_decision_html_renders_a_stored_decision(db, accounts):
    app = make_merchant().app
    record = RoutingDecision.objects.create(
        charge_id="ch_routing_html", app=app, livemode=False, method="alipay_qr", currency="CNY", amount=100,
        strategy="priority", candidates=[{"account_id": accounts[1].pk, "name": "CCB only", "removed": None,
        "detail": "", "cost": 0, "success_rate": None, "p50_ms": None, "score": None, "breaker": "closed"}],
        attempts=[{"account_id": accounts[1].pk, "outcome": "ok", "code": "", "at": "now"}], winner=accounts[1],
    )  # fmt: skip
    html = str(decision_html("ch_routing_html"))
    assert "CCB only" in html and "eligible" in html and f"/{record.pk}/" in html
    assert "No routing decision" in str(decision_html("ch_missing"))


@pytest.mark.parametrize(
    ("extra", "kept"),
    [
        ({"card_number": "6222 0200 0000 0000 1", "cvv": "123", "x": 1}, {"x": 1}),
        ({"x": 1}, {"x": 1}),
    ],
    ids=["card", "no-card"],
)
def test_card_details_never_stay_in_extra(extra, kept):
    number = "".join(c for c in extra.get("card_number", "") if c.isdigit())
    if number:  # make it Luhn-valid
        for check in "0123456789":
            try:
                card, cleaned = card_from_extra(method="alipay_qr", extra={**extra, "card_number": number[:-1] + check})
                break
            except CardInvalid:
                continue
        assert (card.bin, card.last4) == ("622202", card.number[-4:]) and len(card.fingerprint) == 64
        assert card.number not in repr(card)
    else:
        card, cleaned = card_from_extra(method="alipay_qr", extra=extra)
        assert card is None
    assert cleaned == kept
