"""Settings from environment variables: a bad value stops the process with a message naming the variable."""

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
