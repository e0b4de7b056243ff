"""Demo data for `make run`: an admin, a merchant app with keys, and a sandbox Alipay account.

Idempotent: a second run reuses what `var/demo.json` describes when it still exists in the
database, and only points the sandbox account at the current sandbox URL.
"""

import io
import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.channels.models import ChannelAccount
from apps.channels.services import channel_account_upsert
from apps.core import crypto
from apps.core.services import platform_public_key_pem
from apps.merchants.selectors import app_get
from apps.merchants.services import app_create, merchant_get_or_create

SANDBOX_ALIPAY = "Sandbox Alipay"


class Command(BaseCommand):
    help = "Load the demo merchant, keys and sandbox channel account; write var/demo.json."

    def add_arguments(self, parser):
        parser.add_argument("--api-base", default="http://127.0.0.1:8000")
        parser.add_argument("--sandbox-base", default="http://127.0.0.1:8001")
        parser.add_argument("--out", default=str(settings.VAR_DIR / "demo.json"))

    def handle(self, *args, **options):
        out = Path(options["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(out.read_text()) if out.exists() else {}
        with transaction.atomic():
            demo = self._merchant_app(previous, out.parent / f"{out.stem}-keys")
            demo["admin_username"], demo["admin_password"] = self._admin(previous)
            self._sandbox_alipay(options["sandbox_base"])
        demo["api_base"] = options["api_base"]
        out.write_text(json.dumps(demo, indent=2) + "\n")
        self.stdout.write(f"demo data ready: {out}")

    def _merchant_app(self, previous: dict, key_dir: Path) -> dict:
        keys = ("app_id", "test_secret_key", "live_secret_key", "merchant_private_key_path")
        if all(previous.get(k) for k in keys) and app_get(public_id=previous["app_id"]):
            demo = {k: previous[k] for k in keys}
        else:
            private = crypto.rsa_generate()
            app, issued = app_create(
                merchant=merchant_get_or_create(name="Demo Merchant"),
                name="Demo Shop",
                public_key_pem=crypto.public_key_pem(private),
            )
            key_dir.mkdir(parents=True, exist_ok=True)
            private_path = key_dir / "merchant_private_key.pem"
            private_path.write_text(crypto.private_key_pem(private))
            private_path.chmod(0o600)
            demo = {
                "app_id": app.public_id,
                "test_secret_key": issued.test_secret_key,
                "live_secret_key": issued.live_secret_key,
                "merchant_private_key_path": str(private_path.resolve()),
            }
        platform_path = key_dir / "platform_public_key.pem"
        key_dir.mkdir(parents=True, exist_ok=True)
        platform_path.write_text(platform_public_key_pem())
        demo["platform_public_key_path"] = str(platform_path.resolve())
        return demo

    def _admin(self, previous: dict) -> tuple[str, str]:
        username = previous.get("admin_username") or "admin"
        password = previous.get("admin_password") or secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return username, password

    def _sandbox_alipay(self, sandbox_base: str) -> None:
        existing = ChannelAccount.objects.filter(name=SANDBOX_ALIPAY).first()
        if existing and existing.credentials.get("app_id"):
            credentials = existing.credentials
        else:
            buffer = io.StringIO()
            call_command("sandbox_account_create", provider="alipay", json=True, stdout=buffer)
            created = json.loads(buffer.getvalue())
            credentials = {k: created[k] for k in ("app_id", "app_private_key", "alipay_public_key")}
        channel_account_upsert(
            name=SANDBOX_ALIPAY,
            provider="alipay",
            base_url=f"{sandbox_base.rstrip('/')}/sandbox/alipay/gateway.do",
            credentials=credentials,
            methods=["alipay_qr"],
            currencies=["CNY"],
            livemode=False,
        )
