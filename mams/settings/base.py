"""Settings shared by every environment, read from the environment so one build runs anywhere.

The names are listed in `.env.example` and the README. No secret has a default: a profile whose
key is missing fails with an error naming the variable, not with a stray request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# django-environ reads and casts every variable (env.str, env.int, env.bool, env.float, env.json). Two
# house rules: an empty variable counts as unset (.env.example and the stack leave optional ones empty),
# and no value is read as a reference to another variable ($NAME), since a generated secret may start
# with '$' (each '$' is escaped on the way in and restored by escape_proxy).
env = environ.Env()
env.escape_proxy = True
env.ENVIRON = {name: value.replace("$", "\\$") for name, value in os.environ.items() if value != ""}

SECRET_KEY = env.str("MAMS_SECRET_KEY", "")
DEBUG = False
ALLOWED_HOSTS: list[str] = env.list("MAMS_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "negotiation",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mams.urls"
WSGI_APPLICATION = "mams.wsgi.application"

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
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env.str("MAMS_DB_NAME", "mams"),
        "USER": env.str("MAMS_DB_USER", "mams"),
        "PASSWORD": env.str("MAMS_DB_PASSWORD", ""),
        "HOST": env.str("MAMS_DB_HOST", "127.0.0.1"),
        "PORT": env.str("MAMS_DB_PORT", "54329"),
        "CONN_MAX_AGE": env.int("MAMS_DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env.str("MAMS_TEST_DB_NAME", "test_mams")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "mams" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "/admin/login/"

# --- Redis, Celery -----------------------------------------------------------------------------
REDIS_URL = env.str("MAMS_REDIS_URL", "redis://127.0.0.1:63790/0")
CELERY_BROKER_URL: str = env.str("MAMS_BROKER_URL", REDIS_URL)
# Kombu's Redis transport with a fix that keeps a worker alive through a Redis restart (see mams/broker.py).
CELERY_BROKER_TRANSPORT = "mams.broker:Transport" if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every DB connection before and after each task unless this is set, so each
# turn paid for a new Postgres connection (TCP + SCRAM auth). Reuse them; mams.celery closes a connection
# that is broken or older than CONN_MAX_AGE, as Django does between requests.
CELERY_DB_REUSE_MAX = env.int("MAMS_CELERY_DB_REUSE_MAX", 1_000_000)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Retry the broker forever (Celery's default gives up after 100 tries and the worker exits): a Redis
# outage longer than that must leave the worker waiting, ready when Redis returns.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task whose worker died is redelivered after this many seconds (acks_late).
    "visibility_timeout": env.int("MAMS_VISIBILITY_TIMEOUT", 3600),
    # Every worker looks for such tasks this often. Kombu's default scans only every 10th time of
    # 10 s, so a dead worker's tasks came back up to 100 s after the visibility timeout.
    "unacked_restore_interval": env.int("MAMS_UNACKED_RESTORE_SECONDS", 10),
    "unacked_restore_throttle": 1,
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- LLM profiles ------------------------------------------------------------------------------
# A profile names an OpenAI-compatible endpoint, its key variable, default models per role, the
# prompt format ("chat" for instruction models, "completion" for base models such as the local
# Gemma 270M) and the limits shared by all workers through Redis.
LLM_TIMEOUT_SECONDS = env.float("MAMS_LLM_TIMEOUT", 60.0)
LLM_PROFILES: dict[str, dict[str, Any]] = {
    "local": {
        "base_url": env.str("MAMS_LOCAL_LLM_URL", "http://127.0.0.1:18080/v1"),
        "base_url_env": "MAMS_LOCAL_LLM_URL",
        "api_key": "local-no-key",
        "api_key_env": None,
        # A launch first asks this server for its models (2 s), and is refused if it does not answer.
        "probe": True,
        "models": {"agent": env.str("MAMS_LOCAL_LLM_MODEL", "gemma-3-270m"),
                   "analyst": env.str("MAMS_LOCAL_LLM_MODEL", "gemma-3-270m")},
        # The local server serves exactly one model (its --model_alias).
        "known_models": [env.str("MAMS_LOCAL_LLM_MODEL", "gemma-3-270m")],
        "known_models_env": "MAMS_LOCAL_LLM_MODEL",
        "prompt_format": "completion",
        "rate": env.str("MAMS_LOCAL_LLM_RATE", "600/minute"),
        # llama-cpp-python's server answers one request at a time.
        "max_concurrency": env.int("MAMS_LOCAL_LLM_CONCURRENCY", 1),
    },
    "openrouter": {
        "base_url": env.str("MAMS_OPENROUTER_URL", "https://openrouter.ai/api/v1"),
        "base_url_env": "MAMS_OPENROUTER_URL",
        "api_key_env": "OPENROUTER_API_KEY",
        "models": {"agent": env.str("MAMS_OPENROUTER_AGENT_MODEL", "anthropic/claude-sonnet-4.5"),
                   "analyst": env.str("MAMS_OPENROUTER_ANALYST_MODEL", "google/gemini-2.5-flash")},
        # Optional allow-list (comma-separated); empty means any model the provider knows.
        "known_models": env.list("MAMS_OPENROUTER_MODELS", default=[]),
        "known_models_env": "MAMS_OPENROUTER_MODELS",
        "prompt_format": "chat",
        "rate": env.str("MAMS_OPENROUTER_RATE", "60/minute"),
        # Tokens per minute (prompt + completion, then prompt and completion alone where the provider
        # limits them apart, as Anthropic does); empty: only the limits the provider's headers state.
        "tpm": env.str("MAMS_OPENROUTER_TPM", ""),
        "input_tpm": env.str("MAMS_OPENROUTER_INPUT_TPM", ""),
        "output_tpm": env.str("MAMS_OPENROUTER_OUTPUT_TPM", ""),
        "max_concurrency": env.int("MAMS_OPENROUTER_CONCURRENCY", 8),
    },
    "openai-compatible": {
        "base_url": env.str("MAMS_OPENAI_BASE_URL", None),
        "base_url_env": "MAMS_OPENAI_BASE_URL",
        "api_key_env": "MAMS_OPENAI_API_KEY",
        "models": {"agent": env.str("MAMS_OPENAI_MODEL", "gpt-4o-mini"),
                   "analyst": env.str("MAMS_OPENAI_ANALYST_MODEL", env.str("MAMS_OPENAI_MODEL", "gpt-4o-mini"))},
        "prompt_format": env.str("MAMS_OPENAI_PROMPT_FORMAT", "chat"),
        "rate": env.str("MAMS_OPENAI_RATE", "60/minute"),
        # Tokens per minute (prompt + completion, then prompt and completion alone where the provider
        # limits them apart, as Anthropic does); empty: only the limits the provider's headers state.
        "tpm": env.str("MAMS_OPENAI_TPM", ""),
        "input_tpm": env.str("MAMS_OPENAI_INPUT_TPM", ""),
        "output_tpm": env.str("MAMS_OPENAI_OUTPUT_TPM", ""),
        "max_concurrency": env.int("MAMS_OPENAI_CONCURRENCY", 8),
    },
}
LLM_DEFAULT_PROFILE = env.str("MAMS_DEFAULT_PROFILE", "local")
# The share of a provider's stated limit (its rate-limit headers) the shared limiter uses: a hair
# under 1, so loopback and network jitter never puts one request over the provider's own count.
LLM_PROVIDER_LIMIT_SHARE = env.float("MAMS_LLM_PROVIDER_LIMIT_SHARE", 0.99)
# The share of a configured limit (MAMS_<PROFILE>_RATE, _TPM...) it paces at: configure the provider's
# real limit, and the limiter keeps this margin under it for the jitter between its grant and the
# request's arrival (0.97: 31 ms of slack in a 1-second window; see negotiation/agents/limiter.py).
LLM_CONFIGURED_LIMIT_SHARE = env.float("MAMS_LLM_CONFIGURED_LIMIT_SHARE", 0.97)
if not 0 < LLM_CONFIGURED_LIMIT_SHARE <= 1:
    raise ImproperlyConfigured("MAMS_LLM_CONFIGURED_LIMIT_SHARE must be above 0 and at most 1, "
                               f"got {LLM_CONFIGURED_LIMIT_SHARE}")

# --- Limits ------------------------------------------------------------------------------------
MAMS_MAX_RUNS_PER_BATCH = env.int("MAMS_MAX_RUNS_PER_BATCH", 10000)
# Batches one user may have queued or running at once; one more is refused with 429 (0: no limit).
MAMS_MAX_ACTIVE_BATCHES_PER_USER = env.int("MAMS_MAX_ACTIVE_BATCHES_PER_USER", 10)
# Rooms with an outside buyer (live negotiations and /env episodes together) one user may hold open at
# once; one more is refused with 429 (0: no limit).
MAMS_MAX_OPEN_ROOMS_PER_USER = env.int("MAMS_MAX_OPEN_ROOMS_PER_USER", 20)
MAMS_MAX_ROUNDS_LIMIT = env.int("MAMS_MAX_ROUNDS_LIMIT", 20)
# The key of a `hidden`-rules run's last round (engine/protocol.py::last_round), drawn from the run's seed;
# empty means SECRET_KEY. Set the same value on two deployments to pair their runs exactly.
MAMS_DEADLINE_KEY = env.str("MAMS_DEADLINE_KEY", "")
MAMS_MAX_SELLERS = 10
# Item demands per buyer and inventory lines per seller (a session document stays small to import and play).
MAMS_MAX_ITEMS = 50
# Transient LLM failures (429, 5xx, timeouts) retry this often before a run fails.
MAMS_LLM_MAX_RETRIES = env.int("MAMS_LLM_MAX_RETRIES", 6)
# Postgres or Redis errors (a restart, a failover) retry a turn this often, on a budget of their own, with
# a backoff of 1, 2, 4 ... 60 s: 60 retries is about an hour. Then the run fails with the reason.
MAMS_INFRA_MAX_RETRIES = env.int("MAMS_INFRA_MAX_RETRIES", 60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("MAMS_LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
    },
}

# A running run with no progress for this long is re-queued by the sweeper (every minute); so is a queued
# run of an unfinished batch that waited this long while the rounds queue was empty (its task was lost).
MAMS_STALE_RUN_SECONDS = env.int("MAMS_STALE_RUN_SECONDS", 600)
# A room with an outside buyer (live or /env) and no message for this long is closed by the same sweeper,
# as cancelled with the reason (0: rooms never expire).
MAMS_ROOM_IDLE_SECONDS = env.int("MAMS_ROOM_IDLE_SECONDS", 24 * 3600)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-runs": {"task": "negotiation.sweep", "schedule": 60.0, "options": {"queue": "maintenance"}},
    # Re-queue a reflect sequence's reflection whose task was lost (idempotent).
    "sweep-sequences": {"task": "negotiation.reflect_sweep", "schedule": 60.0, "options": {"queue": "maintenance"}},
    # Read Galileo's scores of recent traces back (a no-op without GALILEO_API_KEY).
    "galileo-scores": {"task": "analytics.galileo_scores", "schedule": 300.0, "options": {"queue": "maintenance"}},
    # Queue the audit archive of ended runs whose archive task was never queued (idempotent).
    "archive-sweep": {"task": "analytics.archive_sweep", "schedule": 300.0, "options": {"queue": "maintenance"}},
    # Mark benchmark runs whose batches have all ended as finished, and raise drift flags.
    "benchmark-finish": {"task": "analytics.benchmark_finish_sweep", "schedule": 60.0,
                         "options": {"queue": "maintenance"}},
}

# --- REST API ----------------------------------------------------------------------------------
# Token auth for scripts, session auth for the docs pages; every error body is
# {"detail": "...", "errors": {"field.path": ["message"]}} (negotiation/api/errors.py).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["negotiation.api.common.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "negotiation.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
}
# Request bodies above this are refused with 413 (a session document is a few KiB).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAMS_MAX_BODY_BYTES", 1024 * 1024)
SPECTACULAR_SETTINGS = {
    "TITLE": "MAMS API",
    "DESCRIPTION": (
        "Configure marketplace sessions, launch and watch batches of LLM negotiations, and negotiate "
        "live as the buyer. Authenticate with `Authorization: Token <key>` "
        "(`manage.py create_api_user <name>` prints one). Every error is a 4xx whose body is "
        '`{"detail": "summary", "errors": {"field.path": ["message", ...]}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "negotiation.models.NegotiationRun.Status",
        "BatchStatusEnum": "negotiation.models.Batch.Status",
        "DisclosureEnum": "negotiation.models.Disclosure",
        "RulesEnum": "negotiation.models.Rules",
        "RunModeEnum": "negotiation.models.NegotiationRun.Mode",
        "LiveModeEnum": ["human_buyer"],
        "PartStateEnum": ["up", "down"],  # /api/health, per part
        "EnvCheckEnum": ["ok", "unavailable"],  # /env/health, per check
    },
}
# Live negotiation: how long `POST /message` with wait=true waits for the sellers, and the SSE
# stream's heartbeat and lifetime (a client reconnects with Last-Event-ID after it ends).
MAMS_LIVE_WAIT_SECONDS = env.int("MAMS_LIVE_WAIT_SECONDS", 120)
MAMS_SSE_HEARTBEAT_SECONDS = env.float("MAMS_SSE_HEARTBEAT_SECONDS", 15.0)
MAMS_SSE_MAX_SECONDS = env.float("MAMS_SSE_MAX_SECONDS", 900.0)
# A stream re-reads Postgres at least this often even without a pub/sub notice (a lost notice, a
# failed or cancelled run).
MAMS_SSE_POLL_SECONDS = env.float("MAMS_SSE_POLL_SECONDS", 5.0)

# --- Analytics, quality and monitoring (analytics/) ---------------------------------------------
# US dollars per 1M tokens per model; a dated model name is priced by its longest matching key.
# The local profile is always free. Add or override entries with MAMS_MODEL_PRICES_JSON, e.g.
# '{"my-model": {"input": 0.5, "output": 1.5}}'. A run that used an unpriced model has no cost.
MAMS_MODEL_PRICES: dict[str, dict[str, float]] = {
    "anthropic/claude-sonnet-4.5": {"input": 3.0, "output": 15.0},
    "anthropic/claude-sonnet-4": {"input": 3.0, "output": 15.0},
    "anthropic/claude-haiku-4.5": {"input": 1.0, "output": 5.0},
    "google/gemini-2.5-flash": {"input": 0.30, "output": 2.50},
    "google/gemini-2.5-pro": {"input": 1.25, "output": 10.0},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50},
    "openai/gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.0},
    "gemma-3-270m": {"input": 0.0, "output": 0.0},
}
MAMS_MODEL_PRICES.update(env.json("MAMS_MODEL_PRICES_JSON", {}))
# A finished run is analysed on the `analysis` queue (the analyst profile, or local scorers).
MAMS_ANALYSIS_ENABLED = env.bool("MAMS_ANALYSIS_ENABLED", True)
MAMS_BOOTSTRAP_RESAMPLES = env.int("MAMS_BOOTSTRAP_RESAMPLES", 1000)
# Galileo: one session per batch, one trace per negotiation, one LLM span per call. Without a key
# nothing is sent. GALILEO_API_URL / GALILEO_CONSOLE_URL point the SDK at another deployment.
GALILEO_API_KEY = env.str("GALILEO_API_KEY", None)
GALILEO_PROJECT = env.str("GALILEO_PROJECT", "mams")
GALILEO_LOG_STREAM = env.str("GALILEO_LOG_STREAM", "negotiations")
# A dotted path to a function that receives Galileo's ingest payload instead of the network (tests).
MAMS_GALILEO_INGESTION_HOOK = env.str("MAMS_GALILEO_INGESTION_HOOK", None)
# Sentry: errors from the web app and the workers, without prompts or personal data. No DSN, no-op.
SENTRY_DSN = env.str("SENTRY_DSN", None)
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", "local")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", 0.0)
if SENTRY_DSN:
    from mams.sentry import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT or "local", traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE)
# The audit archive (analytics/archive.py): every ended run as <prefix>/<batch>/<run>.json.gz. s3://bucket/prefix
# writes through boto3 (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION for Tigris, S3
# or MinIO); file:///abs/path writes a local folder; unset means file://<clone>/.local/archive.
MAMS_ARCHIVE_URL = env.str("MAMS_ARCHIVE_URL", "") or f"file://{BASE_DIR / '.local' / 'archive'}"
MAMS_ARCHIVE_ENABLED = env.bool("MAMS_ARCHIVE_ENABLED", True)
# Retries of a failed write (backoff 2, 4, 8 ... s capped at 5 min); then the error is recorded on the run.
MAMS_ARCHIVE_MAX_RETRIES = env.int("MAMS_ARCHIVE_MAX_RETRIES", 8)
MAMS_ARCHIVE_TIMEOUT_SECONDS = env.float("MAMS_ARCHIVE_TIMEOUT_SECONDS", 10.0)
# Seller voices (negotiation/services/voice.py): ElevenLabs when ELEVENLABS_API_KEY is set (read from the
# environment when speaking, never stored), else Debian's espeak-ng. MAMS_ELEVENLABS_URL: another endpoint.
MAMS_ELEVENLABS_MODEL = env.str("MAMS_ELEVENLABS_MODEL", "eleven_multilingual_v2")
MAMS_ELEVENLABS_URL = env.str("MAMS_ELEVENLABS_URL", "")
MAMS_VOICE_MAX_CHARS = env.int("MAMS_VOICE_MAX_CHARS", 600)
MAMS_VOICE_TIMEOUT_SECONDS = env.float("MAMS_VOICE_TIMEOUT_SECONDS", 60.0)
MAMS_VOICE_MAX_RETRIES = env.int("MAMS_VOICE_MAX_RETRIES", 4)
