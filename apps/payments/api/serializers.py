import re
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from rest_framework import serializers

from apps.core.errors import InvalidRequest
from apps.core.money import currency_of, from_minor

MAX_AMOUNT = 10**12
ORDER_NO = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StrictIntegerField(serializers.Field):
    """A JSON integer only: `100` is accepted; `"100"`, `100.0` and `true` are refused."""

    default_error_messages = {"invalid": "must be an integer"}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class AppRefSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)


class JSONObjectField(serializers.DictField):
    """A JSON object (hash); anything else is refused."""


class ChargeCreateSerializer(serializers.Serializer):
    order_no = serializers.CharField(max_length=64)
    app = AppRefSerializer()
    channel = serializers.CharField(max_length=32)
    amount = StrictIntegerField()
    currency = serializers.CharField(max_length=3)
    client_ip = serializers.IPAddressField()
    subject = serializers.CharField(max_length=32)
    body = serializers.CharField(max_length=128)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    extra = JSONObjectField(required=False)
    metadata = JSONObjectField(required=False)
    time_expire = StrictIntegerField(required=False)

    def validate_order_no(self, value):
        if not ORDER_NO.match(value):
            raise serializers.ValidationError("must be 1-64 letters, digits, '_' or '-'")
        return value

    def validate_amount(self, value):
        if value <= 0:
            raise InvalidRequest("amount must be a positive integer in minor units.", param="amount")
        if value > MAX_AMOUNT:
            raise InvalidRequest("amount is too large.", param="amount")
        return value

    def validate_currency(self, value):
        return currency_of(value)

    def validate_time_expire(self, value):
        now = timezone.now()
        when = datetime.fromtimestamp(value, tz=UTC)
        if not now + timedelta(minutes=1) <= when <= now + timedelta(days=15):
            raise InvalidRequest("time_expire must be between 1 minute and 15 days from now.", param="time_expire")
        return when

    def validate(self, attrs):
        attrs["money"] = from_minor(attrs.pop("amount"), attrs.pop("currency"))
        return attrs
