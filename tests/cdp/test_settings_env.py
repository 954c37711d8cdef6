"""Settings from environment variables: a bad value stops the process with a message naming the variable."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
GOOD_ENV = {
    "SECRET_KEY": "a-long-random-secret-for-this-test",
    "DEBUG": "0",
    "DATABASE_URL": "postgres://cdp:secret@db.internal:5432/cdp",
}


def django_setup(**overrides: str | None) -> subprocess.CompletedProcess:
    """Run django.setup() in a fresh interpreter with GOOD_ENV plus overrides (None removes a variable)."""
    env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "cdp.settings", **GOOD_ENV}
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_good_environment_sets_django_up():
    result = django_setup()

    assert result.returncode == 0, result.stderr


BAD_SETTINGS = [
    ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
    ({"DATABASE_URL": "mysql://cdp:secret@db.internal/cdp"}, "DATABASE_URL must point to PostgreSQL"),
    ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
    ({"SECRET_KEY": None, "DEBUG": "0"}, "SECRET_KEY is not set"),
    ({"SECRET_KEY": "   "}, "SECRET_KEY is not set"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD' must be one of"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' must be 'json' or 'text'"),
    ({"CDP_MAX_EVENTS_PER_REQUEST": "abc"}, "CDP_MAX_EVENTS_PER_REQUEST='abc' is not an integer"),
    ({"CDP_MAX_EVENTS_PER_REQUEST": "0"}, "CDP_MAX_EVENTS_PER_REQUEST=0 is below the minimum 1"),
    ({"DB_CONN_MAX_AGE": "forever"}, "DB_CONN_MAX_AGE='forever' is not an integer"),
    ({"SECURE_COOKIES": "sure"}, "SECURE_COOKIES='sure' is not a boolean"),
    ({"DB_CONN_MAX_AGE": "-5"}, "DB_CONN_MAX_AGE=-5 is below the minimum 0"),
    ({"ALLOWED_HOSTS": "https://cdp.example.com"}, "ALLOWED_HOSTS='https://cdp.example.com' must be a host name"),
    ({"CSRF_TRUSTED_ORIGINS": "cdp.example.com"}, "CSRF_TRUSTED_ORIGINS='cdp.example.com' must be an origin"),
    (
        {"CSRF_TRUSTED_ORIGINS": "https://cdp.example.com/admin/"},
        "CSRF_TRUSTED_ORIGINS='https://cdp.example.com/admin/'",
    ),
    ({"DB_CONNECT_TIMEOUT": "0"}, "DB_CONNECT_TIMEOUT=0 is below the minimum 1"),
    ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS='a year' is not an integer"),
    ({"SECURE_SSL_REDIRECT": "always"}, "SECURE_SSL_REDIRECT='always' is not a boolean"),
    ({"REDIS_URL": "redis.internal:6379"}, "REDIS_URL must be a URL starting with redis://, rediss://"),
    ({"REDIS_URL": "http://user:pw@redis.internal"}, "REDIS_URL must be a URL starting with redis://"),
    ({"CELERY_BROKER_URL": "broker.internal"}, "CELERY_BROKER_URL must be a URL starting with amqp://"),
    ({"CELERY_RESULT_BACKEND": "results"}, "CELERY_RESULT_BACKEND must be a URL starting with db+<driver>://"),
]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [pytest.param(o, m, id=",".join(f"{k}={v}" for k, v in o.items())) for o, m in BAD_SETTINGS],
)
def test_bad_setting_stops_startup_with_a_message_naming_the_variable(overrides, message):
    result = django_setup(**overrides)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    assert message in last_line


def test_secret_key_may_be_missing_in_debug_mode_only():
    result = django_setup(SECRET_KEY=None, DEBUG="1")

    assert result.returncode == 0, result.stderr


def test_a_bad_url_is_named_without_its_password():
    """REDIS_URL=garbage started: the first task sent, or the first rate-limited request, was a 500."""
    result = django_setup(REDIS_URL="http://cdp:hunter2-secret@redis.internal:6379/0")

    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr and "it has http://" in result.stderr
    assert "hunter2" not in result.stderr


def test_good_broker_and_result_urls_are_taken():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CELERY_BROKER_URL, s.CELERY_RESULT_BACKEND)"
    )
    env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "cdp.settings", **GOOD_ENV}
    env.update(REDIS_URL="rediss://redis.internal:6380/0", CELERY_BROKER_URL="amqp://cdp:pw@mq.internal//",
               CELERY_RESULT_BACKEND="db+postgresql://cdp:pw@db.internal/cdp")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["amqp://cdp:pw@mq.internal//", "db+postgresql://cdp:pw@db.internal/cdp"]


def test_a_relative_media_root_is_taken_from_the_checkout_not_the_working_directory():
    code = "import django; django.setup(); from django.conf import settings as s; print(s.MEDIA_ROOT)"
    env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "cdp.settings", "MEDIA_ROOT": "files/media",
           "PYTHONPATH": str(BASE_DIR), **GOOD_ENV}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(BASE_DIR / "files" / "media")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "5"),
        ({"DB_CONNECT_TIMEOUT": "12"}, "12"),
        ({"DATABASE_URL": "postgres://cdp:secret@db.internal:5432/cdp?connect_timeout=30"}, "30"),
    ],
)
def test_database_connections_give_up_after_a_connect_timeout(overrides, expected):
    """Without one, a database host that drops packets held every request (and /readyz) in connect() for minutes."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; print(s.DATABASES['default']['OPTIONS'])"
    )
    env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "cdp.settings", **GOOD_ENV, **overrides}
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert str(ast.literal_eval(result.stdout.strip())["connect_timeout"]) == expected


def test_the_operations_guide_lists_every_variable_the_settings_read_with_its_default():
    """docs/operations.md's table is the operator's list: a variable missing there cannot be found, one that is
    there but not read is set for nothing, and a wrong default misleads."""
    import re

    table = {}
    for line in (BASE_DIR / "docs" / "operations.md").read_text().splitlines():
        row = re.match(r"\| `([A-Z_]+)` \| ([^|]*) \|", line)
        if row:
            table[row.group(1)] = row.group(2)
    settings_source = (BASE_DIR / "cdp" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|list|url)\(\s*"([A-Z_]+)"', settings_source))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', (BASE_DIR / "cdp/services/secrets.py").read_text()))

    assert set(table) == read, (sorted(read - set(table)), sorted(set(table) - read))
    for name, default in re.findall(r'env_int\(\s*"([A-Z_]+)",\s*([0-9][0-9 *]*)', settings_source):
        documented = re.match(r"`(\d+)`", table[name])
        assert documented and int(documented.group(1)) == eval(default), (name, table[name])  # noqa: S307
    for name, default in re.findall(r'env_bool\(\s*"([A-Z_]+)",\s*(True|False)\)', settings_source):
        assert table[name].startswith(f"`{int(default == 'True')}`"), (name, table[name])
