"""Shared API pieces: the JSON parser and list-object pagination in the Ping++ shape."""

from rest_framework import serializers
from rest_framework.parsers import JSONParser

from apps.core.errors import InvalidRequest


class StrictJSONParser(JSONParser):
    """JSON bodies only; a body that is not a JSON object is a clear 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        return data


def list_object(*, url: str, data: list, has_more: bool) -> dict:
    return {"object": "list", "url": url, "has_more": has_more, "data": data}


class ListQuerySerializer(serializers.Serializer):
    """`limit`, `starting_after`, `ending_before` of Ping++ list endpoints."""

    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    starting_after = serializers.CharField(required=False, max_length=64)
    ending_before = serializers.CharField(required=False, max_length=64)

    def validate(self, attrs):
        if attrs.get("starting_after") and attrs.get("ending_before"):
            raise InvalidRequest("Use starting_after or ending_before, not both.", param="starting_after")
        return attrs


def bool_param(value: str | None) -> bool | None:
    """Ping++ SDKs send booleans as True/False/true/false."""
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered not in {"true", "false", "1", "0"}:
        raise InvalidRequest(f"Not a boolean: {value!r}.")
    return lowered in {"true", "1"}
