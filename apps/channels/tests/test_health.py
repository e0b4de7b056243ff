"""Channel health: exact numbers from the call log, through the selectors and on the console pages."""

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.html import strip_tags

from apps.channels.health import Stats, account_call_series, account_stats
from apps.channels.models import CallOperation, CallOutcome, ChannelCall
from apps.channels.services import channel_account_upsert

OK, REJECTED, TIMEOUT = CallOutcome.OK, CallOutcome.REJECTED, CallOutcome.TIMEOUT
UNAVAILABLE, INVALID = CallOutcome.UNAVAILABLE, CallOutcome.INVALID_RESPONSE


def make_account(name: str):
    return channel_account_upsert(
        name=name,
        provider="alipay",
        base_url="http://127.0.0.1:9/gateway.do",
        credentials={"app_id": "1"},
        methods=["alipay_qr"],
        currencies=["CNY"],
        livemode=False,
    )


def log(account, *, at, latency_ms, outcome, request_id=""):
    return ChannelCall(
        provider="alipay",
        account=account,
        operation=CallOperation.QUERY_PAYMENT,
        outcome=outcome,
        http_status=None if outcome in (TIMEOUT, UNAVAILABLE) else 200,
        result_code="ACQ.SYSTEM_ERROR" if outcome == REJECTED else "",
        latency_ms=latency_ms,
        request_id=request_id,
        created_at=at,
    )


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def accounts(db, now):
    """One busy account with a known day of calls, one neighbour, one account never called.

    Last hour (10 calls): latencies 10…100 ms; 7 ok, 1 refused, 1 timeout, 1 unavailable.
    Three hours ago (2 calls): 200 ms ok, 400 ms invalid response.
    Two days ago (outside both windows): one 9999 ms timeout.
    """
    busy, neighbour, idle = make_account("Busy"), make_account("Neighbour"), make_account("Idle")
    five, twenty, three_h = now - dt.timedelta(minutes=5), now - dt.timedelta(minutes=20), now - dt.timedelta(hours=3)
    ChannelCall.objects.bulk_create(
        [
            *(log(busy, at=five, latency_ms=ms, outcome=OK) for ms in (10, 20, 30, 40, 50, 60)),
            log(busy, at=twenty, latency_ms=70, outcome=OK),
            log(busy, at=twenty, latency_ms=80, outcome=REJECTED, request_id="req-refused"),
            log(busy, at=twenty, latency_ms=90, outcome=TIMEOUT, request_id="req-timeout"),
            log(busy, at=twenty, latency_ms=100, outcome=UNAVAILABLE, request_id="req-unavailable"),
            log(busy, at=three_h, latency_ms=200, outcome=OK),
            log(busy, at=three_h, latency_ms=400, outcome=INVALID, request_id="req-invalid"),
            log(busy, at=now - dt.timedelta(days=2), latency_ms=9999, outcome=TIMEOUT, request_id="req-old"),
            log(neighbour, at=five, latency_ms=5, outcome=OK),
        ]
    )
    return {"busy": busy, "neighbour": neighbour, "idle": idle, "five": five, "twenty": twenty, "three_h": three_h}


def test_account_stats_over_the_last_hour_and_day(accounts, now):
    busy, neighbour, idle = accounts["busy"], accounts["neighbour"], accounts["idle"]
    ids = [busy.pk, neighbour.pk, idle.pk]

    hour = account_stats(ids, now - dt.timedelta(hours=1))
    day = account_stats(ids, now - dt.timedelta(days=1))

    assert hour[busy.pk] == Stats(
        calls=10, ok=7, rejected=1, faults=2, timeouts=1, p50_ms=55.0, p95_ms=pytest.approx(95.5)
    )
    assert (hour[busy.pk].success_rate, hour[busy.pk].error_rate) == (0.7, 0.2)
    assert day[busy.pk].calls == 12
    assert (day[busy.pk].ok, day[busy.pk].rejected, day[busy.pk].faults, day[busy.pk].timeouts) == (8, 1, 3, 1)
    assert day[busy.pk].p50_ms == 65.0
    assert day[busy.pk].p95_ms == pytest.approx(290.0)  # 200 + 0.45 × 200, interpolated
    assert (day[busy.pk].success_rate, day[busy.pk].error_rate) == (8 / 12, 3 / 12)
    assert hour[neighbour.pk] == Stats(calls=1, ok=1, p50_ms=5.0, p95_ms=5.0)
    assert hour[idle.pk] == Stats()
    assert (hour[idle.pk].success_rate, hour[idle.pk].error_rate) == (None, None)


def test_account_stats_honours_the_end_of_the_window(accounts, now):
    busy = accounts["busy"]

    stats = account_stats([busy.pk], now - dt.timedelta(days=1), until=now - dt.timedelta(minutes=10))

    assert stats[busy.pk] == Stats(
        calls=6, ok=2, rejected=1, faults=3, timeouts=1, p50_ms=95.0, p95_ms=pytest.approx(350.0)
    )


def test_the_series_has_every_bucket_with_its_calls_and_faults(accounts, now):
    busy = accounts["busy"]

    series = account_call_series(account_id=busy.pk, since=now - dt.timedelta(hours=1), until=now, step="minute")

    assert len(series) in (60, 61)  # a partial first minute when now is not on a minute boundary
    by_start = {bucket.start: (bucket.calls, bucket.faults) for bucket in series}
    assert by_start[accounts["five"].replace(second=0, microsecond=0)] == (6, 0)
    assert by_start[accounts["twenty"].replace(second=0, microsecond=0)] == (4, 2)
    assert sum(bucket.calls for bucket in series) == 10


def cells(html: str) -> list[str]:
    return [strip_tags(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)]


def section(content: str, pattern: str) -> str:
    match = re.search(pattern, content, re.S)
    assert match, pattern
    return match.group(0)


def bar_title(at: dt.datetime, fmt: str, step: str, text: str) -> str:
    start = at.replace(second=0, microsecond=0) if step == "minute" else at.replace(minute=0, second=0, microsecond=0)
    return f"<title>{timezone.localtime(start).strftime(fmt)}: {text}</title>"


def test_the_health_overview_shows_every_account_with_real_numbers(admin_client, accounts):
    busy, idle = accounts["busy"], accounts["idle"]

    response = admin_client.get("/admin/channels/channelaccount/health/")

    assert response.status_code == 200
    content = response.content.decode()
    busy_row = cells(section(content, rf'<tr id="account-{busy.pk}">.*?</tr>'))
    assert busy_row == [
        "Busy",
        "Alipay",
        "sandbox",
        *("10", "70.0%", "20.0%", "1", "1", "55.0 ms", "95.5 ms"),
        *("12", "66.7%", "25.0%", "1", "1", "65.0 ms", "290.0 ms"),
    ]
    idle_row = cells(section(content, rf'<tr id="account-{idle.pk}">.*?</tr>'))
    assert idle_row == ["Idle", "Alipay", "sandbox", *("0", "—", "—", "0", "0", "—", "—") * 2]
    assert f'href="/admin/channels/channelaccount/{busy.pk}/health/"' in content


def test_the_account_health_page_shows_both_windows_a_chart_and_the_failures(admin_client, accounts):
    busy = accounts["busy"]

    response = admin_client.get(f"/admin/channels/channelaccount/{busy.pk}/health/")

    assert response.status_code == 200
    content = response.content.decode()
    assert cells(section(content, r'<table class="channel-health-window" id="window-1">.*?</table>')) == [
        *("10", "70.0%", "20.0%", "1", "1", "55.0 ms", "95.5 ms")
    ]
    assert cells(section(content, r'<table class="channel-health-window" id="window-2">.*?</table>')) == [
        *("12", "66.7%", "25.0%", "1", "1", "65.0 ms", "290.0 ms")
    ]
    assert content.count('<svg role="img"') == 2
    assert bar_title(accounts["five"], "%H:%M", "minute", "6 calls, 0 faults") in content
    assert bar_title(accounts["twenty"], "%H:%M", "minute", "4 calls, 2 faults") in content
    assert bar_title(accounts["three_h"], "%m-%d %H:00", "hour", "2 calls, 1 faults") in content
    failures = section(content, r'<table id="failures">.*?</table>')
    assert re.findall(r"req-[a-z]+", failures) == [  # newest first
        "req-unavailable",
        "req-timeout",
        "req-refused",
        "req-invalid",
        "req-old",
    ]


def test_the_change_page_and_changelist_link_to_health(admin_client, accounts):
    busy = accounts["busy"]

    changelist = admin_client.get("/admin/channels/channelaccount/").content.decode()
    change = admin_client.get(f"/admin/channels/channelaccount/{busy.pk}/change/").content.decode()

    assert 'href="/admin/channels/channelaccount/health/"' in changelist
    assert f'href="/admin/channels/channelaccount/{busy.pk}/health/"' in changelist
    assert f'href="/admin/channels/channelaccount/{busy.pk}/health/"' in change


@pytest.mark.parametrize(
    "path", ["/admin/channels/channelaccount/health/", "/admin/channels/channelaccount/{}/health/"]
)
def test_health_pages_are_for_staff_only(client, accounts, path):
    url = path.format(accounts["busy"].pk)
    anonymous = client.get(url)
    user = get_user_model().objects.create_user("ops-outsider", password="pw-not-staff")
    client.force_login(user)
    not_staff = client.get(url)

    assert (anonymous.status_code, not_staff.status_code) == (302, 302)
    assert anonymous["Location"].startswith("/admin/login/")
    assert not_staff["Location"].startswith("/admin/login/")


def test_an_unknown_account_has_no_health_page(admin_client, db):
    assert admin_client.get("/admin/channels/channelaccount/999999/health/").status_code == 404
