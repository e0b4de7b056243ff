import factory

from apps.events.models import Event, WebhookDelivery
from apps.events.wire import event_to_wire, wire_body
from apps.merchants import services as merchant_services
from apps.merchants.models import App, Merchant, WebhookEndpoint


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"merchant {n}")


class AppFactory(factory.django.DjangoModelFactory):
    """An app made by the merchants service (with its test and live keys)."""

    class Meta:
        model = App

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"app {n}")

    @classmethod
    def _create(cls, model_class, merchant, name, **kwargs):
        app, _keys = merchant_services.app_create(merchant=merchant, name=name, **kwargs)
        return app


class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEndpoint

    app = factory.SubFactory(AppFactory)
    url = "http://127.0.0.1:9/webhooks"

    @classmethod
    def _create(cls, model_class, app, url, enabled=True):
        endpoint = merchant_services.webhook_endpoint_create(app=app, url=url)
        if not enabled:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
            endpoint.enabled = False
        return endpoint


def charge_object(**overrides) -> dict:
    """A Ping++ charge as `data.object` (only what these tests look at)."""
    return {"id": "ch_0123456789abcdefghijklmn", "object": "charge", "amount": 100, "paid": True, **overrides}


class EventFactory(factory.django.DjangoModelFactory):
    """An event row without its deliveries or enqueued sends (for sweep set-ups)."""

    class Meta:
        model = Event

    app = factory.SubFactory(AppFactory)
    type = "charge.succeeded"
    livemode = False
    data = factory.LazyFunction(lambda: {"object": charge_object()})
    request_id = "iar_factory"

    @classmethod
    def _create(cls, model_class, **kwargs):
        event = model_class(**kwargs)
        event.body = wire_body(event_to_wire(event, pending_webhooks=1))
        event.save()
        return event


class WebhookDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookDelivery

    event = factory.SubFactory(EventFactory)
    endpoint = factory.LazyAttribute(lambda delivery: WebhookEndpointFactory(app=delivery.event.app))
    next_attempt_at = None
