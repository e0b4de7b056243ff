from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core.errors import api_not_found, api_server_error

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/", include("apps.payments.urls")),
    path("v1/", include("apps.merchants.urls")),
    path("notify/", include("apps.payments.notify_urls")),
    path("sandbox/", include("apps.sandbox.urls")),
]

handler404 = api_not_found
handler500 = api_server_error
