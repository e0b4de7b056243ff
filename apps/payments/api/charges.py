"""Charges API, Ping++ v1 shape: POST/GET /v1/charges and GET /v1/charges/{id}."""

from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ListQuerySerializer, bool_param, list_object
from apps.core.errors import InvalidRequest
from apps.core.idempotency import idempotent
from apps.payments import selectors, services
from apps.payments.api.serializers import ChargeCreateSerializer
from apps.payments.exceptions import AppMismatch
from apps.payments.wire import charge_to_wire

LIST_PARAMETERS = [
    OpenApiParameter("app[id]", str, required=True),
    OpenApiParameter("limit", int),
    OpenApiParameter("starting_after", str),
    OpenApiParameter("ending_before", str),
    OpenApiParameter("channel", str),
    OpenApiParameter("paid", bool),
    *[OpenApiParameter(f"created[{op}]", int) for op in ("gt", "gte", "lt", "lte")],
]


def _require_own_app(principal, app_id: str | None, param: str) -> None:
    if not app_id:
        raise InvalidRequest(f"{param} is required.", param=param)
    if app_id != principal.app.public_id:
        raise AppMismatch(f"No such app for this key: {app_id}.", param=param)


def _unix_param(query, name: str) -> datetime | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(int(raw), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f"{name} must be a unix timestamp.", param=name) from None


class ChargeCollectionApi(APIView):
    """POST creates a charge; GET lists the app's charges, newest first."""

    @extend_schema(request=ChargeCreateSerializer, responses={200: OpenApiTypes.OBJECT}, operation_id="charge_create")
    @idempotent
    def post(self, request):
        principal = request.user
        serializer = ChargeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        _require_own_app(principal, data["app"]["id"], "app[id]")
        charge = services.charge_create(
            app=principal.app,
            livemode=principal.livemode,
            params=services.ChargeParams(
                order_no=data["order_no"],
                channel=data["channel"],
                amount=data["money"],
                client_ip=data["client_ip"],
                subject=data["subject"],
                body=data["body"],
                description=data.get("description") or "",
                extra=data.get("extra") or {},
                metadata=data.get("metadata") or {},
                time_expire=data.get("time_expire"),
            ),
            request_id=request.request_id,
        )
        return Response(charge_to_wire(charge))

    @extend_schema(parameters=LIST_PARAMETERS, responses={200: OpenApiTypes.OBJECT}, operation_id="charge_list")
    def get(self, request):
        principal = request.user
        query = request.query_params
        _require_own_app(principal, query.get("app[id]"), "app[id]")
        paging = ListQuerySerializer(data=query)
        paging.is_valid(raise_exception=True)
        page, has_more = selectors.charges_list(
            app=principal.app,
            livemode=principal.livemode,
            limit=paging.validated_data["limit"],
            starting_after=paging.validated_data.get("starting_after"),
            ending_before=paging.validated_data.get("ending_before"),
            filters=selectors.ChargeListFilter(
                channel=query.get("channel") or None,
                paid=bool_param(query.get("paid")),
                **{f"created_{op}": _unix_param(query, f"created[{op}]") for op in ("gt", "gte", "lt", "lte")},
            ),
        )
        return Response(list_object(url="/v1/charges", data=[charge_to_wire(c) for c in page], has_more=has_more))


class ChargeRetrieveApi(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="charge_retrieve")
    def get(self, request, charge_id: str):
        principal = request.user
        charge = selectors.charge_get_for_app(app=principal.app, livemode=principal.livemode, public_id=charge_id)
        return Response(charge_to_wire(charge))
