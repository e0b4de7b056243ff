"""Routing's tables: per-account policy, per app+method strategy, the BIN table, daily counters,
circuit breakers and the decision stored for each charge (docs/routing.md).

Amounts are integer minor units of the charge's currency (an account serving two currencies has
one cap per currency: the counter is per account, day and currency).
"""

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from apps.channels.models import ChannelAccount
from apps.merchants.models import App
from apps.routing.engine import BreakerState, Strategy


class RoutingPolicy(models.Model):
    """How routing may use one channel account. An account without a policy has no limits."""

    account = models.OneToOneField(ChannelAccount, on_delete=models.CASCADE, related_name="routing_policy")
    min_amount = models.BigIntegerField(null=True, blank=True, help_text="single payment minimum, minor units")
    max_amount = models.BigIntegerField(null=True, blank=True, help_text="single payment maximum, minor units")
    daily_amount_cap = models.BigIntegerField(null=True, blank=True, help_text="per day and currency, minor units")
    daily_count_cap = models.PositiveIntegerField(null=True, blank=True, help_text="payments per day")
    weight = models.PositiveIntegerField(default=100, help_text="share in the weighted split (70/30 = 70 and 30)")
    banks = ArrayField(
        models.CharField(max_length=16),
        default=list,
        blank=True,
        help_text='bank_card: issuing bank codes served (BIN table), "*" for any bank',
    )
    allowed_apps = models.ManyToManyField(App, blank=True, help_text="empty: every app")
    daily_maintenance_start = models.TimeField(null=True, blank=True, help_text="local time (TIME_ZONE)")
    daily_maintenance_end = models.TimeField(null=True, blank=True, help_text="may be before the start: wraps midnight")
    provider_method = models.CharField(
        max_length=32,
        blank=True,
        help_text="the product this account uses at its provider when it differs from the Ping++ channel "
        "(e.g. bank_card served through Alipay's cashier: alipay_qr)",
    )
    breaker_window_seconds = models.PositiveIntegerField(default=60)
    breaker_min_calls = models.PositiveIntegerField(default=5)
    breaker_error_rate = models.DecimalField(max_digits=4, decimal_places=3, default="0.500")
    breaker_cooldown_seconds = models.PositiveIntegerField(default=30)
    breaker_probes = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="half-open: how many charges at a time may try the account before the breaker closes",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "routing policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(min_amount__isnull=True)
                | Q(max_amount__isnull=True)
                | Q(min_amount__lte=models.F("max_amount")),
                name="routing_policy_min_le_max",
            ),
            models.CheckConstraint(condition=Q(breaker_probes__gte=1), name="routing_policy_probes_positive"),
        ]

    def __str__(self) -> str:
        return f"policy of {self.account}"


class MaintenanceWindow(models.Model):
    """A one-off period in which the account takes no new payments."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="maintenance_windows")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "ends_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="routing_window_order")
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.starts_at:%Y-%m-%d %H:%M} – {self.ends_at:%Y-%m-%d %H:%M}"


class RouteConfig(models.Model):
    """The ranking strategy for an app and method; a row without an app is the default for the method."""

    app = models.ForeignKey(App, null=True, blank=True, on_delete=models.CASCADE, help_text="empty: every app")
    method = models.CharField(max_length=32, help_text="Ping++ channel code")
    strategy = models.CharField(
        max_length=16, choices=[(s.value, s.value) for s in Strategy], default=Strategy.PRIORITY
    )
    weight_priority = models.DecimalField(max_digits=4, decimal_places=3, default="0.100")
    weight_cost = models.DecimalField(max_digits=4, decimal_places=3, default="0.400")
    weight_success = models.DecimalField(max_digits=4, decimal_places=3, default="0.400")
    weight_latency = models.DecimalField(max_digits=4, decimal_places=3, default="0.100")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["app", "method"], condition=Q(app__isnull=False), name="routing_config_app"
            ),
            models.UniqueConstraint(fields=["method"], condition=Q(app__isnull=True), name="routing_config_default"),
        ]

    def __str__(self) -> str:
        return f"{self.app or 'every app'} / {self.method}: {self.strategy}"


class CardBin(models.Model):
    """A BIN (issuer identification number prefix, 6 or 8 digits) and the bank that issued it."""

    prefix = models.CharField(max_length=8, unique=True)
    bank = models.CharField(max_length=16, help_text="bank code, e.g. ICBC")
    bank_name = models.CharField(max_length=100, blank=True)
    card_type = models.CharField(max_length=8, choices=[("debit", "debit"), ("credit", "credit")], default="debit")

    class Meta:
        verbose_name = "card BIN"
        constraints = [models.CheckConstraint(condition=Q(prefix__regex=r"^[0-9]{6,8}$"), name="routing_bin_digits")]

    def __str__(self) -> str:
        return f"{self.prefix} {self.bank}"


class DailyCounter(models.Model):
    """Amount and count reserved on an account per local day and currency (exact: see services)."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField(default=0)
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day", "currency"], name="routing_counter_unique"),
            models.CheckConstraint(condition=Q(amount__gte=0, count__gte=0), name="routing_counter_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day} {self.currency}: {self.amount} / {self.count}"


class CircuitBreaker(models.Model):
    """The persisted breaker state of an account (absent: closed).

    While half-open, `probes` counts the charges trying the account now (at most the policy's
    `breaker_probes`); `probe_until` ends their lease, so a process that died mid-probe does not
    block the next probe for longer than that.
    """

    account = models.OneToOneField(ChannelAccount, on_delete=models.CASCADE, related_name="circuit_breaker")
    state = models.CharField(max_length=12, choices=[(s.value, s.value) for s in BreakerState], default="closed")
    changed_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)
    probes = models.PositiveIntegerField(default=0)
    probe_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.account}: {self.state}"


class RoutingDecision(models.Model):
    """Why a charge went where it went: candidates, removals, scores, winner and attempts.

    `charge_id` is the charge's public id (routing sits below payments and cannot reference it).
    The card is kept as BIN, last four and a keyed fingerprint only, never the number.
    """

    charge_id = models.CharField(max_length=32, unique=True)
    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="+")
    livemode = models.BooleanField()
    method = models.CharField(max_length=32)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    strategy = models.CharField(max_length=16)
    card_bin = models.CharField(max_length=8, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_fingerprint = models.CharField(max_length=64, blank=True)
    card_bank = models.CharField(max_length=16, blank=True)
    candidates = models.JSONField(default=list)
    attempts = models.JSONField(default=list)
    winner = models.ForeignKey(ChannelAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The daily-cap reservation the charge holds now (account and local day; `amount`/`currency`
    # above): cleared when it is given back. `released_at`: the charge closed or failed unpaid and
    # its reservation was given back (once); no reservation is taken for it afterwards.
    reserved_account = models.ForeignKey(  # no index: written on every decision, never searched by
        ChannelAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    reserved_day = models.DateField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(reserved_account__isnull=True, reserved_day__isnull=True)
                | Q(reserved_account__isnull=False, reserved_day__isnull=False),
                name="routing_decision_reservation_whole",
            )
        ]

    def __str__(self) -> str:
        return f"routing of {self.charge_id}"


class ConfigVersion(models.Model):
    """One row (id 1) whose `version` changes in the same transaction as any edit of what routing
    caches per process: accounts, policies and their allowed apps, maintenance windows, route
    configs and fee plans (statement triggers, migration 0004). A decision reads it with the
    day's usage and rebuilds its cached configuration when it differs (docs/routing.md)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField()

    def __str__(self) -> str:
        return f"routing configuration version {self.version}"
