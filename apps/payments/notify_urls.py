from django.urls import path

from apps.payments.api.notifications import provider_notification

urlpatterns = [
    path("<str:provider>/<int:account_id>/", provider_notification, name="provider-notification"),
]
