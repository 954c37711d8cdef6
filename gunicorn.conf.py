"""gunicorn's settings for this project, read from the working directory when it starts (`gunicorn cdp.wsgi ...`
in the checkout, as docs/operations.md runs it; `-c` names another file). Only logging: gunicorn's own lines
(start-up, worker boots and exits, `WORKER TIMEOUT`) in the app's format, so with LOG_FORMAT=json every line of
the web process is one JSON object, as the log shipper expects. Command-line options still set everything else.
The access log stays off (gunicorn's default; `--access-logfile` has no effect with this file): request paths may
carry personal data in query strings. gunicorn's control socket is off: by default every gunicorn of a user shares
one (~/.gunicorn/gunicorn.ctl), so a second instance on the host (a staging copy, a benchmark) took it over from the
first; `--control-socket PATH` turns it on for an instance that needs it."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cdp.env import env_bool, env_str  # noqa: E402 - after the checkout is on the path

_format = env_str("LOG_FORMAT", "text" if env_bool("DEBUG", False) else "json")
_format = _format if _format in {"json", "text"} else "text"  # a bad value stops the app itself, with the message
_console = {"class": "logging.StreamHandler", "formatter": _format, "stream": "ext://sys.stderr"}

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "static_fields": {"request_id": "-"},
        },
        "text": {"format": "%(asctime)s %(levelname)-7s [-] %(name)s: %(message)s"},
    },
    "handlers": {"console": _console, "error_console": _console},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        # Off, as without this file (a logging config turns gunicorn's access log on): the proxy logs requests.
        "gunicorn.access": {"level": "WARNING", "handlers": ["console"], "propagate": False},
    },
}

# One shared socket per user by default (see above); nothing here uses gunicorn's runtime control.
control_socket_disable = True
