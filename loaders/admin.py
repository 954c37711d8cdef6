"""The export pages of the Business Explorer (destinations, segment exports, schedules) live with the export
models in segments/exports/admin.py; Django's admin autodiscovery imports this module, which registers them."""

from segments.exports import admin  # noqa: F401
