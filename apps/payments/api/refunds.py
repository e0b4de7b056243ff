"""Refunds and reverse, Ping++ v1 shape."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ListQuerySerializer, list_object
from apps.core.idempotency import idempotent
from apps.core.money import from_minor
from apps.payments import queries, refunds, selectors
from apps.payments.api.serializers import JSONObjectField, StrictIntegerField
from apps.payments.wire import charge_to_wire, refund_to_wire


class RefundCreateSerializer(serializers.Serializer):
    amount = StrictIntegerField(required=False)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    metadata = JSONObjectField(required=False)
    funding_source = serializers.CharField(max_length=32, required=False, allow_blank=True, allow_null=True)

    def validate_amount(self, value):
        if value <= 0:
            raise serializers.ValidationError("must be a positive integer in minor units")
        return value


def _charge(request, charge_id: str):
    principal = request.user
    return selectors.charge_get_for_app(app=principal.app, livemode=principal.livemode, public_id=charge_id)


class ChargeRefundCollectionApi(APIView):
    """POST refunds a charge (amount optional: all that is refundable); GET lists its refunds."""

    @extend_schema(request=RefundCreateSerializer, responses={200: OpenApiTypes.OBJECT}, operation_id="refund_create")
    @idempotent
    def post(self, request, charge_id: str):
        charge = _charge(request, charge_id)
        serializer = RefundCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        amount = data.get("amount")
        refund = refunds.refund_create(
            charge=charge,
            amount=from_minor(amount, charge.amount.currency) if amount is not None else None,
            description=data.get("description") or "",
            metadata=data.get("metadata") or {},
            request_id=request.request_id,
        )
        return Response(refund_to_wire(refund, charge=charge))

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="refund_list")
    def get(self, request, charge_id: str):
        charge = _charge(request, charge_id)
        paging = ListQuerySerializer(data=request.query_params)
        paging.is_valid(raise_exception=True)
        page, has_more = selectors.refunds_list(
            charge=charge,
            limit=paging.validated_data["limit"],
            starting_after=paging.validated_data.get("starting_after"),
            ending_before=paging.validated_data.get("ending_before"),
        )
        return Response(
            list_object(
                url=f"/v1/charges/{charge.public_id}/refunds",
                data=[refund_to_wire(r, charge=charge) for r in page],
                has_more=has_more,
            )
        )


class ChargeRefundRetrieveApi(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="refund_retrieve")
    def get(self, request, charge_id: str, refund_id: str):
        charge = _charge(request, charge_id)
        refund = selectors.refund_get_for_charge(charge=charge, public_id=refund_id)
        return Response(refund_to_wire(refund, charge=charge))


class ChargeReverseApi(APIView):
    """Closes an unpaid charge at the provider, then locally. The Go SDK sends an empty body."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT}, operation_id="charge_reverse")
    @idempotent
    def post(self, request, charge_id: str):
        charge = queries.charge_reverse(charge=_charge(request, charge_id), request_id=request.request_id)
        charge = selectors.charge_get_for_app(app=charge.app, livemode=charge.livemode, public_id=charge.public_id)
        return Response(charge_to_wire(charge))
