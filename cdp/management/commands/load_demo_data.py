"""manage.py load_demo_data: demo roles, users, data sources and a few thousand events (safe to run again)."""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from cdp.services.demo import (
    DEMO_CUSTOMERS,
    demo_admin_ensure,
    demo_data_load,
    demo_password_generate,
    demo_write_key_ensure,
)


def secret_file_read(path: Path) -> str | None:
    if not path.exists():
        return None
    return path.read_text().strip() or None


def secret_file_write(path: Path, value: str) -> None:
    """Write a secret readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")


class Command(BaseCommand):
    help = (
        "Load the demo data: roles (Marketer, Analyst, Administrator), two users, the data sources web, mobile, "
        "crm and emails, and a few thousand events of ~200 customers over the last 90 days. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=DEMO_CUSTOMERS, help="How many demo customers.")
        parser.add_argument(
            "--admin-password-file",
            type=Path,
            help="Create or reset the superuser 'admin' with the password in this file (made up and written "
            "there, readable by you only, when the file does not exist).",
        )
        parser.add_argument(
            "--write-key-file",
            type=Path,
            help="Keep the web source's plain write key in this file (keys are stored hashed, so it is rotated "
            "and written when the file is missing or out of date).",
        )

    def handle(self, *args, customers: int, admin_password_file: Path | None, write_key_file: Path | None, **options):
        if customers < 1:
            self.stderr.write(self.style.ERROR("--customers must be at least 1."))
            raise SystemExit(2)
        bars: list[tqdm] = []

        def on_total(total: int) -> None:
            bars.append(tqdm(total=total, unit="event", desc="Demo events", disable=options["verbosity"] < 1))

        try:
            summary = demo_data_load(customers=customers, on_total=on_total, progress=lambda n: bars[0].update(n))
        finally:
            for bar in bars:
                bar.close()
        from cdp.selectors import customers_count_estimate

        profiles = customers_count_estimate()  # (exact for a demo's few hundred)
        self.stdout.write(
            f"Demo data: {summary.customers} people, seen as {profiles} customer profiles (visitors who never "
            f"signed in stay anonymous profiles), {summary.events_created} new events "
            f"({summary.events_duplicate} already loaded), {summary.sources_created} new data sources, "
            f"{summary.roles_created} new roles, {summary.users_created} new users, "
            f"{summary.segments_created} new segments."
        )
        if write_key_file is not None:
            known = secret_file_read(write_key_file)
            key = summary.write_keys.get("web") or demo_write_key_ensure(slug="web", known_key=known)
            if key != known:
                secret_file_write(write_key_file, key)
        else:
            for slug, key in summary.write_keys.items():
                self.stdout.write(f"Write key of the '{slug}' source (shown once): {key}")
        if admin_password_file is not None:
            password = secret_file_read(admin_password_file)
            if password is None:
                password = demo_password_generate()
                secret_file_write(admin_password_file, password)
            _, created = demo_admin_ensure(username="admin", password=password)
            self.stdout.write(f"Superuser 'admin' {'created' if created else 'password reset'}.")
