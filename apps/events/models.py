from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from apps.core.ids import PublicIdFactory
from apps.merchants.models import App, WebhookEndpoint


class Event(models.Model):
    """The transactional outbox: written in the same transaction as the state change it describes.

    `body` is the Ping++ event object exactly as every webhook attempt sends it (compact JSON,
    UTF-8), fixed at creation so that all attempts of one event carry identical bytes. `data` holds
    the same resource as JSON for queries and the admin.
    """

    public_id = models.CharField(max_length=32, unique=True, default=PublicIdFactory("evt"), editable=False)
    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=64)
    livemode = models.BooleanField()
    data = models.JSONField()
    body = models.TextField()
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["app", "created_at"], name="event_app_created")]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.type})"


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending"
    FAILING = "failing"
    DELIVERED = "delivered"
    DEAD = "dead"


# Deliveries that still have an attempt to make (what the sweep looks at).
OPEN_STATUSES = (WebhookDeliveryStatus.PENDING, WebhookDeliveryStatus.FAILING)


class WebhookDelivery(ConcurrentTransitionMixin, models.Model):
    """One event sent to one merchant endpoint, retried with backoff until delivered or dead.

    `next_attempt_at` is when the next attempt is due; a sender that claims the delivery moves it
    forward by a lease, so a crashed sender's delivery becomes due again by itself. `queued_until`
    says a send task was enqueued recently, so the sweep does not enqueue it again meanwhile.
    """

    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    status = FSMField(choices=WebhookDeliveryStatus.choices, default=WebhookDeliveryStatus.PENDING, protected=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    queued_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_one_per_endpoint"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=OPEN_STATUSES),
                name="webhook_delivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of {self.event_id} ({self.status})"

    # Only `resend` is offered in the admin; the others are the sender's outcomes.

    @transition(field=status, source=OPEN_STATUSES, target=WebhookDeliveryStatus.DELIVERED, custom={"admin": False})
    def deliver(self, *, at, status_code: int):
        self.delivered_at = at
        self.last_status_code = status_code
        self.last_error = ""
        self.next_attempt_at = None

    @transition(field=status, source=OPEN_STATUSES, target=WebhookDeliveryStatus.FAILING, custom={"admin": False})
    def fail(self, *, status_code: int | None, error: str, retry_at):
        self.last_status_code = status_code
        self.last_error = error
        self.next_attempt_at = retry_at

    @transition(field=status, source=OPEN_STATUSES, target=WebhookDeliveryStatus.DEAD, custom={"admin": False})
    def give_up(self, *, status_code: int | None, error: str):
        self.last_status_code = status_code
        self.last_error = error
        self.next_attempt_at = None

    @transition(
        field=status,
        source=[WebhookDeliveryStatus.DEAD, WebhookDeliveryStatus.FAILING],
        target=WebhookDeliveryStatus.PENDING,
        custom={"admin": True, "label": "Resend", "help_text": "Send this event to the endpoint again now."},
    )
    def resend(self, *, at):
        self.next_attempt_at = at


class WebhookDeliveryTransition(models.Model):
    """Audit row for every webhook delivery state change."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="transitions")
    source = models.CharField(max_length=16)
    target = models.CharField(max_length=16)
    by = models.CharField(max_length=150)
    request_id = models.CharField(max_length=64, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.source} → {self.target} by {self.by}"
