"""paysys settings: one module, every value from the environment.

Variables (all optional in development):
  DATABASE_URL        PostgreSQL URL. `make` starts an embedded server and sets it when absent.
  CELERY_BROKER_URL   Broker URL (Redis or RabbitMQ). `make` starts an embedded Redis when absent.
  REDIS_URL           Cache (replay protection, throttles); defaults to the broker when it is Redis.
  SECRET_KEY          Django secret key.
  PAYSYS_DATA_KEYS    AES-GCM data keys for secrets at rest: "kid:base64key[,kid:base64key…]";
                      the first one encrypts, all of them decrypt.
  PAYSYS_PUBLIC_URL   Base URL that providers use to reach paysys (notification URLs).
  DEBUG, ALLOWED_HOSTS, LOG_LEVEL, TIME_ZONE.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PAYSYS_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "paysys-development-secret-key-change-me-in-production")
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "*").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "django_fsm",
    "djmoney",
    "import_export",
    "apps.core",
    "apps.merchants",
    "apps.events",
    "apps.ledger",
    "apps.channels",
    "apps.routing",
    "apps.orders",
    "apps.payments",
    "apps.reconciliation",
    "apps.sandbox",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.ResponseSignatureMiddleware",
]

ROOT_URLCONF = os.environ.get("PAYSYS_URLCONF", "paysys.urls")
WSGI_APPLICATION = "paysys.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paysys"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
# Server-side parameter binding, and psycopg prepares a statement the 5th time a connection runs
# it: PostgreSQL then parses and plans the hot statements once per connection, not per call.
# DB_PREPARE_THRESHOLD=off turns both off (for a transaction-pooling PgBouncer).
if os.environ.get("DB_PREPARE_THRESHOLD", "5").lower() != "off":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=int(os.environ.get("DB_PREPARE_THRESHOLD", "5"))
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
REDIS_URL = os.environ.get(
    "REDIS_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "redis://127.0.0.1:6379/1"
)
CACHES = {
    "default": {
        "BACKEND": "apps.core.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "paysys"),
    }
}

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "paysys")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep paysys log lines (with request ids) in the worker
# Periodic sweeps: each app declares its own (a plain dict in <app>/schedule.py).
from apps.core.schedule import BEAT_SCHEDULE as _CORE_BEAT  # noqa: E402
from apps.events.schedule import BEAT_SCHEDULE as _EVENTS_BEAT  # noqa: E402
from apps.ledger.schedule import BEAT_SCHEDULE as _LEDGER_BEAT  # noqa: E402
from apps.payments.schedule import BEAT_SCHEDULE as _PAYMENTS_BEAT  # noqa: E402
from apps.reconciliation.schedule import BEAT_SCHEDULE as _RECON_BEAT  # noqa: E402
from apps.sandbox.schedule import BEAT_SCHEDULE as _SANDBOX_BEAT  # noqa: E402

CELERY_BEAT_SCHEDULE = {**_CORE_BEAT, **_EVENTS_BEAT, **_LEDGER_BEAT, **_PAYMENTS_BEAT, **_RECON_BEAT, **_SANDBOX_BEAT}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
WHITENOISE_USE_FINDERS = True  # serve app static files even before collectstatic has run
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.merchants.authentication.SecretKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.api.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "apps.core.errors.pingpp_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "paysys merchant API",
    "DESCRIPTION": "Ping++ v1 compatible payment API.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

# The currencies paysys takes (apps.core.money.SUPPORTED_CURRENCIES). As django-money's setting it
# also pins the money fields' currency choices, which otherwise follow babel's labels of every
# ISO currency and move the migrations whenever babel renames one.
CURRENCIES = ("CNY", "EUR", "HKD", "JPY", "KWD", "USD")

# paysys
PAYSYS_DATA_KEYS = os.environ.get("PAYSYS_DATA_KEYS", "")
PAYSYS_PUBLIC_URL = os.environ.get("PAYSYS_PUBLIC_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
PAYSYS_SIGNATURE_TOLERANCE_SECONDS = 300
PAYSYS_CHANNEL_TIMEOUT_SECONDS = float(os.environ.get("PAYSYS_CHANNEL_TIMEOUT_SECONDS", "10"))
PAYSYS_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("PAYSYS_WEBHOOK_TIMEOUT_SECONDS", "10"))
PAYSYS_CHARGE_DEFAULT_EXPIRY_SECONDS = 86400
# Ledger (docs/ledger.md): day cut (日切) time and zone, default settlement delay (T+N days),
# balance slots per hot account.
PAYSYS_DAY_CUT_TIME = os.environ.get("PAYSYS_DAY_CUT_TIME", "00:00")
PAYSYS_DAY_CUT_ZONE = os.environ.get("PAYSYS_DAY_CUT_ZONE", "Asia/Shanghai")
PAYSYS_SETTLEMENT_DELAY_DAYS = int(os.environ.get("PAYSYS_SETTLEMENT_DELAY_DAYS", "1"))
PAYSYS_LEDGER_HOT_SLOTS = int(os.environ.get("PAYSYS_LEDGER_HOT_SLOTS", "16"))
PAYSYS_IDEMPOTENCY_KEY_TTL_HOURS = int(os.environ.get("PAYSYS_IDEMPOTENCY_KEY_TTL_HOURS", "24"))
# Routing (docs/routing.md): the HMAC key of card fingerprints (empty: derived from SECRET_KEY).
PAYSYS_CARD_FINGERPRINT_KEY = os.environ.get("PAYSYS_CARD_FINGERPRINT_KEY", "")
# How stale a worker's routing caches may be: configuration snapshot and breaker-window counts
# (0 turns every cache off), ranking statistics, and the window of those statistics.
PAYSYS_ROUTING_CACHE_SECONDS = float(os.environ.get("PAYSYS_ROUTING_CACHE_SECONDS", "2"))
PAYSYS_ROUTING_STATS_SECONDS = float(os.environ.get("PAYSYS_ROUTING_STATS_SECONDS", "10"))
PAYSYS_ROUTING_RECENT_SECONDS = int(os.environ.get("PAYSYS_ROUTING_RECENT_SECONDS", "3600"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.context.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
