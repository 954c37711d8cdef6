"""Core domain: users, roles, API tokens, data sources, customer events and entities, global settings."""

import uuid

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models.functions import Now

from cdp.features import ALL_FEATURES, Feature


class Role(models.Model):
    """A named set of features. Users get one role; superusers have every feature."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    features = ArrayField(models.CharField(max_length=50, choices=Feature.choices), default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    role = models.ForeignKey(Role, null=True, blank=True, on_delete=models.PROTECT, related_name="users")

    def has_feature(self, feature: str) -> bool:
        if not self.is_active:
            return False
        if self.is_superuser:
            return True
        return self.role is not None and feature in self.role.features

    @property
    def features(self) -> list[str]:
        if self.is_superuser:
            return sorted(ALL_FEATURES)
        return sorted(self.role.features) if self.role else []


class ApiToken(models.Model):
    """An API token. Only a SHA-256 digest is stored; the token is shown once when created."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for, e.g. 'CRM sync'.")
    key_prefix = models.CharField(max_length=16, help_text="The first characters, to recognise a token.")
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.key_prefix}… ({self.name or 'token'})"


class IdempotentRequest(models.Model):
    """An API POST sent with an `Idempotency-Key` header: claimed while it runs (`completed` empty), then its
    successful response, kept for settings.CDP_IDEMPOTENCY_TTL_HOURS. A retry with the same key by the same user is
    answered with that response instead of doing the work again. See cdp/api/idempotency.py."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # HMAC-SHA256 of the method, path, query string and parsed body: the same key with another request is refused
    # (keyed: a body may hold a password).
    fingerprint = models.CharField(max_length=64)
    created = models.DateTimeField()  # when the request claimed the key
    completed = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    content_type = models.CharField(max_length=200, blank=True)
    location = models.TextField(blank=True)
    content = models.BinaryField(default=b"")  # encrypted (cdp.services.idempotency.PURPOSE)

    class Meta:
        db_table = "api_idempotent_requests"
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="api_idempotent_user_key")]
        indexes = [models.Index(fields=["created"], name="api_idempotent_created")]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"


class DataSource(models.Model):
    """Where events come from (web, mobile app, CRM, email, file import)."""

    class Type(models.TextChoices):
        WEB = "web", "Website"
        MOBILE = "mobile", "Mobile app"
        SERVER = "server", "Server / backend"
        CRM = "crm", "CRM"
        EMAIL = "email", "Email"
        IMPORT = "import", "File import"
        OTHER = "other", "Other"

    slug = models.SlugField(max_length=64, unique=True, help_text="Stable identifier used by the API and commands.")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.OTHER)
    description = models.TextField(blank=True)
    write_key_prefix = models.CharField(max_length=16, blank=True)
    write_key_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name


def new_entity_id() -> str:
    return uuid.uuid4().hex


class CustomerEntity(models.Model):
    """One customer, stitched from many events. `modified` is the last change of an attribute value."""

    id = models.CharField(primary_key=True, max_length=32, default=new_entity_id, editable=False, db_collation="C")
    created = models.DateTimeField(db_default=Now())
    modified = models.DateTimeField(db_default=Now())
    # Computed attribute values, {"<attribute id>": [values...]}: one row per customer keeps a segment count one
    # pass over one table, and the GIN index answers equality / membership conditions.
    # (A database default too: a full rebuild copies new customers as their ids alone.)
    attributes = models.JSONField(default=dict, blank=True, db_default={})

    class Meta:
        db_table = "customer_entities"
        ordering = ["-modified"]
        # What the admin's navigation and a marketer call them (the API keeps "customer entities").
        verbose_name = "customer profile"
        verbose_name_plural = "customer profiles"
        indexes = [
            models.Index(fields=["-modified"], name="customer_entities_modified"),
            # The pending list (in kB) takes a recompute's new entries cheaply and is merged in bulk; every lookup
            # scans the whole list (a full 4 MB list made an Audience API lookup ~1.4 ms instead of ~0.1 ms), so
            # attributes_recompute empties it when it has written. A 256 kB list cost a third of a batch's time.
            GinIndex(
                fields=["attributes"],
                name="customer_entities_attributes",
                opclasses=["jsonb_path_ops"],
                gin_pending_list_limit=4096,
            ),
        ]

    def __str__(self) -> str:
        return self.id


class StaleEntity(models.Model):
    """The attribute recomputation queue: customers whose events, merges or splits changed since their attributes
    were computed. Stitching adds rows; the attributes task deletes the ones it claims (SKIP LOCKED) in the same
    transaction that writes the new values. A narrow table of its own, so that queueing a customer does not
    rewrite its wide row (and its attributes' GIN entries) only to flip a flag. No foreign key: a queued customer
    that was merged away or erased meanwhile is simply skipped."""

    entity_id = models.CharField(primary_key=True, max_length=32, db_collation="C")
    # When it was first queued (a customer queued again keeps its time): how long the oldest has waited tells
    # whether the workers keep up. A database default, so every writer's INSERT and COPY (entity_id) sets it.
    queued = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "customer_entities_stale"
        indexes = [models.Index(fields=["queued"], name="customer_entities_stale_queued")]

    def __str__(self) -> str:
        return self.entity_id


class Attribute(models.Model):
    """A computed customer attribute: a typed, named property with a declared computation over the customer's
    events. Values are lists (a customer can have several emails)."""

    class DataType(models.TextChoices):
        STRING = "string", "Text"
        INT = "int", "Whole number"
        FLOAT = "float", "Decimal number"
        BOOL = "bool", "Yes / no"
        DATE = "date", "Date"
        DATETIME = "datetime", "Date and time"
        COMPOUND = "compound", "Compound (several fields)"

    class Computation(models.TextChoices):
        IDENTIFIER_VALUES = "identifier_values", "Identifier values of a stitching category"
        FIRST_VALUE = "first_value", "First value of a payload path"
        LAST_VALUE = "last_value", "Last value of a payload path"
        UNIQUE_VALUES = "unique_values", "All unique values of a payload path"
        COUNT = "count", "Number of events"
        SUM = "sum", "Sum of a payload path"
        MIN = "min", "Minimum of a payload path"
        MAX = "max", "Maximum of a payload path"
        AVERAGE = "average", "Average of a payload path"
        FIRST_EVENT_TIME = "first_event_time", "Time of the first event"
        LAST_EVENT_TIME = "last_event_time", "Time of the last event"

    id = models.SlugField(primary_key=True, max_length=64, help_text="e.g. ps_email_address, total_order_value")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    data_type = models.CharField(max_length=10, choices=DataType.choices, default=DataType.STRING)
    unit = models.CharField(max_length=20, blank=True, help_text="e.g. EUR, days")
    computation = models.CharField(max_length=20, choices=Computation.choices)
    category = models.CharField(max_length=64, blank=True, help_text="Stitching category id, for identifier values.")
    sources = models.ManyToManyField(DataSource, blank=True, help_text="Only events of these sources (empty: all).")
    event_types = ArrayField(
        models.CharField(max_length=128), default=list, blank=True, help_text="Only events of these types (empty: all)."
    )
    path = models.CharField(max_length=255, blank=True, help_text="Dotted payload path, e.g. properties.revenue")
    fields = models.JSONField(
        default=list,
        blank=True,
        help_text='A compound attribute\'s fields, read from the same event: [{"id": "total", "name": "Total", '
        '"data_type": "float", "path": "properties.revenue"}, ...]. Its values are objects of them.',
    )
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CustomerEvent(models.Model):
    """One event as received. Idempotent on (source, idempotency_key): the same event is stored once."""

    id = models.BigAutoField(primary_key=True)
    source = models.ForeignKey(DataSource, on_delete=models.PROTECT, related_name="events", db_index=False)
    type = models.CharField(max_length=128)
    event_time = models.DateTimeField(help_text="When it happened (UTC), not when it was loaded.")
    payload = models.JSONField(default=dict)
    created = models.DateTimeField(db_default=Now())
    idempotency_key = models.CharField(
        max_length=128, help_text="The client's message id, or a hash of the event when it sent none."
    )

    class Meta:
        db_table = "customer_events"
        ordering = ["-event_time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "idempotency_key"], name="customer_events_idempotency"),
        ]
        indexes = [
            models.Index(fields=["source", "-event_time"], name="customer_events_source_time"),
            models.Index(fields=["-event_time"], name="customer_events_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} @ {self.event_time:%Y-%m-%d %H:%M:%S}"

    @property
    def customer_entity_id(self) -> str | None:
        """The customer this event is stitched to (None: not yet), from `customer_event_entities`."""
        try:
            return self.entity_link.customer_entity_id
        except CustomerEventEntity.DoesNotExist:
            return None

    @property
    def customer_entity(self) -> CustomerEntity | None:
        try:
            return self.entity_link.customer_entity
        except CustomerEventEntity.DoesNotExist:
            return None


class CustomerEventEntity(models.Model):
    """Which customer an event belongs to; NULL while the event waits for stitching (the stitching queue).

    Kept apart from the wide event row: an event is written once and never rewritten, while stitching moves
    events between customers (merges, splits, rebuilds) by writing these narrow rows only. A row is created with
    every event, by a statement-level trigger on `customer_events` (every way of storing events gets one). No
    database foreign keys: stitching alone writes the table (a full rebuild replaces it with COPY), and raw SQL
    that deletes events (erasure) deletes their rows first; the ORM still applies on_delete."""

    event = models.OneToOneField(
        CustomerEvent, primary_key=True, on_delete=models.CASCADE, related_name="entity_link", db_constraint=False
    )
    customer_entity = models.ForeignKey(
        CustomerEntity,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="event_links",
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        db_table = "customer_event_entities"
        indexes = [
            models.Index(
                fields=["customer_entity"],
                name="customer_event_entities_entity",
                condition=models.Q(customer_entity__isnull=False),
            ),
            # The stitching queue: small because stitched events leave it.
            models.Index(
                fields=["event"], name="customer_events_unstitched", condition=models.Q(customer_entity__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} → {self.customer_entity_id or 'not stitched'}"


class GlobalSetting(models.Model):
    """The stored value of a typed global setting (definitions live in cdp.global_settings)."""

    key = models.CharField(primary_key=True, max_length=100)
    value = models.JSONField()
    modified = models.DateTimeField(auto_now=True)
    modified_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return self.key


class GlobalSettingChange(models.Model):
    """Audit log of global setting changes."""

    key = models.CharField(max_length=100, db_index=True)
    old_value = models.JSONField(null=True)
    new_value = models.JSONField(null=True)
    changed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    changed = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed"]

    def __str__(self) -> str:
        return f"{self.key} @ {self.changed:%Y-%m-%d %H:%M}"
