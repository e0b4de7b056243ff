from django.urls import path

from apps.payments.api.charges import ChargeCollectionApi, ChargeRetrieveApi
from apps.payments.api.refunds import ChargeRefundCollectionApi, ChargeRefundRetrieveApi, ChargeReverseApi

urlpatterns = [
    path("charges", ChargeCollectionApi.as_view(), name="charges"),
    path("charges/<str:charge_id>", ChargeRetrieveApi.as_view(), name="charge"),
    path("charges/<str:charge_id>/refunds", ChargeRefundCollectionApi.as_view(), name="charge-refunds"),
    path("charges/<str:charge_id>/refunds/<str:refund_id>", ChargeRefundRetrieveApi.as_view(), name="charge-refund"),
    path("charges/<str:charge_id>/reverse", ChargeReverseApi.as_view(), name="charge-reverse"),
]
