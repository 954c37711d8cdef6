"""Project settings, read from environment variables (see README "Configuration").

Production-safe defaults: DEBUG is off, SECRET_KEY and DATABASE_URL must be given unless DEBUG is on.
"""

import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.templatetags.static import static

from cdp.env import env_bool, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it to a long random string (or DEBUG=1 for development)."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Common mix-ups, which gunicorn (it runs no system checks) served anyway: a URL in ALLOWED_HOSTS made every request a
# 400, a bare host name in CSRF_TRUSTED_ORIGINS every admin form a 403.
for _host in ALLOWED_HOSTS:
    if "://" in _host or "/" in _host:
        raise ImproperlyConfigured(
            f"ALLOWED_HOSTS={_host!r} must be a host name, e.g. cdp.example.com (no scheme, no path)."
        )
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")) or _origin.count("/") != 2:
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS={_origin!r} must be an origin: scheme and host, e.g. https://cdp.example.com."
        )

INSTALLED_APPS = [
    "unfold",
    "unfold.contrib.filters",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served with ours: /api/docs/ works without a CDN
    "cdp",
    "stitching",
    "segments",
    "loaders",
    "notifications",
    "emails",
]

MIDDLEWARE = [
    "cdp.observability.RequestIdMiddleware",
    "cdp.observability.HealthCheckMiddleware",
    "cdp.middleware.PublicFastLaneMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "cdp.middleware.QueryNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cdp.middleware.DisplayTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cdp.middleware.ServiceBusyMiddleware",
]

# Public hot paths that skip the session / auth / CSRF / messages middleware (cdp.middleware.PublicFastLaneMiddleware):
# URL name -> the keyword arguments of each path to take (None: the path has none).
PUBLIC_FAST_LANE = {
    "audience": None,
    "emails:feedback": None,
    "emails:feedback-provider": [{"provider": "brevo"}, {"provider": "infobip"}],
}

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "cdp" / "templates"],
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

_database_url = env_str("DATABASE_URL")
if not _database_url:
    if not DEBUG:
        raise ImproperlyConfigured("DATABASE_URL is not set, e.g. postgres://user:password@host:5432/cdp.")
    _database_url = "postgres://postgres@127.0.0.1:5432/cdp"
# `manage.py runserver` (the demo's server) answers each request on a new thread, so a connection kept for reuse
# is never reused: it stays open until the thread's objects are collected, and a while of clicking through the admin
# used up PostgreSQL's connection slots. Django's docs say not to keep connections there; an explicit value still wins.
_CONN_MAX_AGE_DEFAULT = 0 if sys.argv[1:2] == ["runserver"] else 60
try:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", _CONN_MAX_AGE_DEFAULT, minimum=0)
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "DATABASE_URL must point to PostgreSQL (postgres://...): it is the only supported database."
    )
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# An unreachable database host (not a refused port: packets dropped) held each request in connect() for the kernel's
# ~2 minutes, past gunicorn's timeout, and /readyz never answered. `?connect_timeout=` in DATABASE_URL wins.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=300)
)

AUTH_USER_MODEL = "cdp.User"
# Unfold's login form posts no "next": without this a direct /admin/login/ lands on /accounts/profile/ (404).
LOGIN_REDIRECT_URL = "admin:index"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Dates and times shown as "2026-11-25 07:25 UTC" everywhere in the admin (cdp/formats/en/formats.py).
FORMAT_MODULE_PATH = ["cdp.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"
# A relative MEDIA_ROOT is taken from the checkout (as the default is), not from each process's working directory.
MEDIA_ROOT = BASE_DIR / env_str("MEDIA_ROOT", str(BASE_DIR / ".data" / "media"))

# Redis: the Celery broker and the shared cache (rate limits). Without it tasks run in-process.
# A bad URL is refused at start-up: otherwise the first task sent, or the first rate-limited request, was a 500.
REDIS_URL = env_url("REDIS_URL", schemes={"redis", "rediss"}, example="redis://redis.internal:6379/0")
_BROKERS = {"redis", "rediss", "redis+socket", "sentinel", "amqp", "amqps", "pyamqp", "sqs"}
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", REDIS_URL, schemes=_BROKERS, example="redis://redis.internal:6379/1")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Workers log through LOGGING below (JSON lines with LOG_FORMAT=json), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Task results (for callers that wait on one, e.g. tests): in Redis when it is there, kept a day.
CELERY_RESULT_BACKEND = (
    env_url(
        "CELERY_RESULT_BACKEND",
        REDIS_URL,
        schemes={"redis", "rediss", "redis+socket", "sentinel", "rpc", "db+"},
        example="redis://redis.internal:6379/2",
    )
    or None
)
CELERY_RESULT_EXPIRES = 24 * 3600
# Sending a task subscribes to its result in Redis; with Redis down that retried 20 times, a second apart, inside the
# web request that sent it. Two quick retries (a blip), then the send fails and the caller's safety net takes over.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
}
CELERY_BEAT_SCHEDULE = {
    "tokens-purge-daily": {"task": "cdp.tasks.tokens_purge", "schedule": 24 * 3600},
    "idempotent-requests-purge-hourly": {"task": "cdp.tasks.idempotent_requests_purge", "schedule": 3600},
    # Safety net: stitching enqueues the recompute after commit; this catches anything a lost message left stale.
    "attributes-recompute-every-minute": {"task": "cdp.tasks.attributes_recompute", "schedule": 60},
    # Safety net: ingestion enqueues stitching after commit; this catches events a lost message left unstitched.
    "stitch-pending-every-minute": {"task": "stitching.tasks.stitch_pending", "schedule": 60},
    # Safety net: configuration changes queue their re-stitch durably; this works off what a lost message left.
    "restitch-requested-every-minute": {"task": "stitching.tasks.restitch_requested", "schedule": 60},
    # Safety net: webhooks enqueue the apply of their accepted payloads; this catches a lost message.
    "emails-feedback-apply-every-minute": {"task": "emails.tasks.feedback_apply", "schedule": 60},
    # Campaigns whose run died (lease expired) or whose message was lost are run again.
    "emails-campaigns-resume-every-minute": {"task": "emails.tasks.campaigns_resume", "schedule": 60},
    # Imports whose worker died (silent for 10 minutes) or whose message was lost are run again (idempotent).
    "emails-imports-resume-every-minute": {"task": "emails.tasks.import_jobs_resume", "schedule": 60},
    # Segment sizes over time (insights): one snapshot per segment and day.
    "segments-size-snapshot-daily": {"task": "segments.tasks.segments_size_snapshot", "schedule": 24 * 3600},
    # Segment exports: resume or cleanly fail exports whose worker died; start scheduled (hourly / daily) exports.
    "segment-exports-watchdog": {"task": "segments.exports.tasks.segment_exports_watchdog", "schedule": 60},
    "segment-exports-scheduled": {"task": "segments.exports.tasks.segment_exports_scheduled", "schedule": 300},
}
# An export whose worker has not reported for this long is resumed (or cleanly failed) by the watchdog.
CDP_EXPORT_STALE_AFTER_S = env_int("CDP_EXPORT_STALE_AFTER_S", 600, minimum=30)
# Destinations (webhook URLs, providers' API base URLs) may not resolve to loopback, private, link-local or other
# non-public addresses: a user who edits destinations could otherwise make the server call its own network (the
# cloud metadata service, Redis) and read the answer in the export's error. On for tests' local fakes only.
CDP_DESTINATIONS_ALLOW_PRIVATE = env_bool("CDP_DESTINATIONS_ALLOW_PRIVATE", False)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Rate limits and task coalescing fail open without Redis: an unreachable host must fail fast too.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Passwords are checked behind the failed-login throttle (the admin's login and the API's alike).
AUTHENTICATION_BACKENDS = ["cdp.services.auth.ThrottledModelBackend"]

# Security headers: on by default when not in DEBUG; TLS termination is usually at the proxy.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
# Client IP for rate limits: the first X-Forwarded-For entry only behind a proxy that sets it (else REMOTE_ADDR).
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HTTPS only: the proxy usually redirects plain HTTP and sets HSTS itself; these do it here instead (the health
# checks answer before either, so a load balancer may probe over plain HTTP).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Event ingestion limits.
CDP_MAX_EVENTS_PER_REQUEST = env_int("CDP_MAX_EVENTS_PER_REQUEST", 1000, minimum=1, maximum=10000)
CDP_MAX_REQUEST_BYTES = env_int("CDP_MAX_REQUEST_BYTES", 5 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CDP_MAX_REQUEST_BYTES
# How long a successful API POST sent with an Idempotency-Key is remembered (a retry within it is answered with the
# first response, nothing done twice); the hourly purge deletes older ones. At most a week: answers may hold personal
# data (encrypted), which an erasure cannot find by customer.
CDP_IDEMPOTENCY_TTL_HOURS = env_int("CDP_IDEMPOTENCY_TTL_HOURS", 24, minimum=1, maximum=168)
# How long a token made by POST /api/users/login works (0: until revoked). Tokens made on purpose (/api/tokens/, the
# admin) take their own `expires`.
CDP_LOGIN_TOKEN_TTL_HOURS = env_int("CDP_LOGIN_TOKEN_TTL_HOURS", 720, minimum=0, maximum=24 * 366)
# Stitch new events right after they are stored (a Celery task, or in-process without a broker).
CDP_STITCH_AFTER_INGEST = env_bool("CDP_STITCH_AFTER_INGEST", True)
# Identity stitching: an identifier that would join this many customers at once is held for review, and phone
# numbers written without a country code get this one (digits, e.g. 420 for Czechia, 1 for the US).
STITCHING_HUB_LIMIT = env_int("STITCHING_HUB_LIMIT", 20, minimum=2)
# Hard caps per customer (Segment Unify's): identifiers, and earlier customers merged into it. A link that would
# break one is refused (status `limit`), so no customer grows without bound.
STITCHING_MAX_IDENTIFIERS = env_int("STITCHING_MAX_IDENTIFIERS", 1000, minimum=2)
STITCHING_MAX_MERGES = env_int("STITCHING_MAX_MERGES", 100, minimum=1)
STITCHING_DEFAULT_COUNTRY_CODE = env_str("STITCHING_DEFAULT_COUNTRY_CODE", "420")
if not STITCHING_DEFAULT_COUNTRY_CODE.isdigit() or len(STITCHING_DEFAULT_COUNTRY_CODE) > 3:
    raise ImproperlyConfigured(
        f"STITCHING_DEFAULT_COUNTRY_CODE={STITCHING_DEFAULT_COUNTRY_CODE!r} must be 1 to 3 digits, e.g. 420 or 1."
    )
# API tokens' last-used time is written at most this often per token (seconds).
CDP_TOKEN_LAST_USED_RESOLUTION = env_int("CDP_TOKEN_LAST_USED_RESOLUTION", 60, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cdp.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "cdp.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "cdp.api.idempotency.AutoSchema",
    "EXCEPTION_HANDLER": "cdp.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["cdp.api.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["cdp.api.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CDP API",
    "DESCRIPTION": (
        "Customer Data Platform REST API. Authenticate with `Authorization: Token <token>` "
        "(or `X-Access-Token: <token>`); get a token from `POST /api/users/login`. "
        "Collections take `limit` / `offset` (default 20, newest first) and `load_full_structure=1`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/",
    # One name per shared choice set (else `manage.py check` warns and components get hashed names: Kind0d6Enum).
    "ENUM_NAME_OVERRIDES": {
        "DestinationKindEnum": "loaders.registry.KIND_CHOICES",
        "EventIdentifierStatusEnum": "stitching.models.EventIdentifier.Status",
        "ErrorStatusEnum": ["error"],
    },
    # /wbs and /v1/* are plain Django views: described by a hook (cdp.api.schema_public).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "cdp.api.schema_public.public_endpoints",
    ],
}

UNFOLD = {
    "SITE_TITLE": "CDP Business Explorer",
    "SITE_HEADER": "CDP Business Explorer",
    "SITE_SYMBOL": "hub",
    "SITE_FAVICONS": [
        {"rel": "icon", "type": "image/svg+xml", "href": lambda request: static("cdp/favicon.svg")},
    ],
    "SHOW_HISTORY": True,
    # Grouped links, each shown only to users whose role may open it (see cdp/admin/navigation.py).
    "SIDEBAR": {"show_search": False, "navigation": "cdp.admin.navigation.sidebar_navigation"},
}

LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be 'json' or 'text'.")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "cdp.observability.RequestIdFilter"},
        "demote_to_warning": {"()": "cdp.observability.DemoteToWarning"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Request logs carry the path with its query string, which may hold PII: keep them at WARNING.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        # A Host header this site does not serve (scanners): one WARNING line, not an ERROR with a traceback.
        "django.security.DisallowedHost": {"filters": ["demote_to_warning"]},
    },
}
