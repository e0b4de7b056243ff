import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core import crypto
from apps.core.errors import PaysysError
from apps.core.services import platform_public_key_pem
from apps.merchants.services import app_create, merchant_get_or_create


class Command(BaseCommand):
    help = "Create an app (with test and live secret keys) for a merchant; keys are shown only here."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", required=True, help="merchant name (created if new)")
        parser.add_argument("--name", default="", help="app name (defaults to the merchant name)")
        parser.add_argument("--public-key-file", help="the merchant's RSA public key (PEM); generated if absent")
        parser.add_argument("--webhook-url", default="", help="a webhook endpoint for the app")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        private_pem = None
        if options["public_key_file"]:
            try:
                public_pem = Path(options["public_key_file"]).read_text()
            except OSError as exc:
                raise CommandError(f"cannot read the public key file: {exc}") from exc
        else:
            private = crypto.rsa_generate()
            private_pem, public_pem = crypto.private_key_pem(private), crypto.public_key_pem(private)
        try:
            merchant = merchant_get_or_create(name=options["merchant"])
            app, keys = app_create(
                merchant=merchant,
                name=options["name"] or options["merchant"],
                public_key_pem=public_pem,
                webhook_url=options["webhook_url"],
            )
        except PaysysError as exc:
            raise CommandError(exc.message) from exc
        result = {
            "merchant_id": merchant.pk,
            "app_id": app.public_id,
            "test_secret_key": keys.test_secret_key,
            "live_secret_key": keys.live_secret_key,
            "platform_public_key": platform_public_key_pem(),
        }
        if private_pem:
            result["merchant_private_key"] = private_pem
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            for key, value in result.items():
                self.stdout.write(f"{key}: {value}")
