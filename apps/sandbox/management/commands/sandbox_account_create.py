"""Creates a sandbox provider account and prints what a paysys channel account needs."""

import json

from django.core.management.base import BaseCommand

from apps.sandbox import services


class Command(BaseCommand):
    help = "Create a sandbox provider account (an Alipay app) and print its credentials."

    def add_arguments(self, parser):
        parser.add_argument("--provider", choices=["alipay", "wechatpay", "unionpay"], required=True)
        parser.add_argument("--name", default="", help="a label shown in the sandbox console")
        parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")

    def handle(self, *args, provider: str, name: str, json: bool, **options):
        if provider == "wechatpay":
            return self._wechatpay(name=name, as_json=json)
        if provider == "unionpay":
            return self._unionpay(name=name, as_json=json)
        created = services.alipay_app_create(name=name)
        document = {"provider": provider, **created.credentials()}
        if json:
            self.stdout.write(_dumps(document))
            return
        self.stdout.write(f"Sandbox Alipay app {created.app_id} created.")
        self.stdout.write("Channel account credentials (the app private key is shown only now):")
        self.stdout.write(_dumps(document, indent=2))

    def _wechatpay(self, *, name: str, as_json: bool) -> None:
        from apps.sandbox import wechatpay_services

        created = wechatpay_services.wechatpay_merchant_create(name=name)
        document = {"provider": "wechatpay", **created.credentials()}
        if not as_json:
            self.stdout.write(f"Sandbox WeChat Pay merchant {created.merchant.mchid} created.")
            self.stdout.write("Channel account credentials (the merchant private key is shown only now):")
        self.stdout.write(_dumps(document, indent=None if as_json else 2))

    def _unionpay(self, *, name: str, as_json: bool) -> None:
        from apps.sandbox import unionpay_services

        created = unionpay_services.unionpay_merchant_create(name=name)
        document = {"provider": "unionpay", **created.credentials()}
        if not as_json:
            self.stdout.write(f"Sandbox UnionPay merchant {created.merchant.mer_id} created.")
            self.stdout.write("Channel account credentials (the signing private key is shown only now):")
        self.stdout.write(_dumps(document, indent=None if as_json else 2))


def _dumps(document: dict, indent: int | None = None) -> str:
    return json.dumps(document, indent=indent)
