from django.urls import path

from apps.payments.api.charges import ChargeCollectionApi, ChargeRetrieveApi

urlpatterns = [
    path("charges", ChargeCollectionApi.as_view(), name="charges"),
    path("charges/<str:charge_id>", ChargeRetrieveApi.as_view(), name="charge"),
]
