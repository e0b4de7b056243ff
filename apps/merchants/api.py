from django.http import HttpResponse

from apps.core.services import platform_public_key_pem


def platform_public_key(request):
    """The platform RSA public key (SPKI PEM) that verifies response and webhook signatures."""
    return HttpResponse(platform_public_key_pem(), content_type="application/x-pem-file")
