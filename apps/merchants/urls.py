from django.urls import path

from apps.merchants.api import platform_public_key

urlpatterns = [
    path("platform_public_key.pem", platform_public_key, name="platform-public-key"),
]
