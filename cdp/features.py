"""The one list of role features. A role is a named set of these; every API endpoint names the one it needs."""

from django.db import models


class Feature(models.TextChoices):
    CUSTOMERS_VIEW = "customers_view", "View customer profiles and events"
    CUSTOMERS_ERASE = "customers_erase", "Erase customers (GDPR): their events, identifiers and attribute values"
    EVENTS_CREATE = "events_create", "Send customer events through the API"
    DATA_SOURCES_VIEW = "data_sources_view", "View data sources"
    DATA_SOURCES_EDIT = "data_sources_edit", "Create and edit data sources, rotate write keys"
    STITCHING_EDIT = "stitching_edit", "Edit stitching categories and rules, re-stitch"
    ATTRIBUTES_EDIT = "attributes_edit", "Edit attribute definitions"
    SEGMENTS_VIEW = "segments_view", "View segments they may see"
    SEGMENTS_EDIT = "segments_edit", "Create and edit segments"
    EXPORTS_RUN = "exports_run", "Run segment exports"
    DESTINATIONS_EDIT = "destinations_edit", "Configure export destinations"
    EMAILS_VIEW = "emails_view", "View email channel state"
    EMAILS_BLOCK = "emails_block", "Block and unblock email addresses"
    EMAILS_SEND = "emails_send", "Send email campaigns"
    SETTINGS_EDIT = "settings_edit", "Edit global settings"
    USERS_ADMIN = "users_admin", "Manage users, roles and their tokens"


ALL_FEATURES: frozenset[str] = frozenset(Feature.values)
