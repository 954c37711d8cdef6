"""Identity stitching: categories of identifiers, rules that extract them from events, the identifier graph
(which event brought which identifier), protections (blocked values, limits, hub review) and the history of
merges and splits."""

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models.functions import Lower

from cdp.models import CustomerEntity, CustomerEvent, DataSource


class StitchingCategory(models.Model):
    """A kind of identifier (email, phone, cookie, user id, CRM id ...)."""

    class Normalizer(models.TextChoices):
        EMAIL = "email", "Email: trim and lower-case"
        PHONE = "phone", "Phone: E.164 (+420123456789)"
        TRIM = "trim", "Trim whitespace"
        LOWER = "lower", "Trim and lower-case"

    id = models.SlugField(primary_key=True, max_length=64, help_text="e.g. email, phone, cookie, user_id")
    name = models.CharField(max_length=200)
    normalizer = models.CharField(max_length=10, choices=Normalizer.choices, default=Normalizer.TRIM)
    max_per_entity = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many values per customer (empty = no limit)."
    )
    limit_window_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Count only the values a customer gained in this many days before each event, as Segment Unify's "
        "daily, weekly or monthly limits do (e.g. 5 emails per 30 days: people change addresses over the years). "
        "Empty: the limit counts every value ever.",
    )
    priority = models.IntegerField(
        default=0, help_text="Higher is more trusted: when a limit forces a choice, lower-priority links are refused."
    )
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "id"]
        verbose_name_plural = "stitching categories"
        constraints = [
            # Identifiers are named by their category's name (profile, graph, merge history): one name, one category.
            models.UniqueConstraint(Lower("name"), name="stitching_category_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class StitchingRule(models.Model):
    """For events of one source and type ('*' = any type), where a category's value sits in the payload."""

    ANY_TYPE = "*"

    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="stitching_rules")
    event_type = models.CharField(max_length=128, default=ANY_TYPE, help_text="Event type, or * for every type.")
    category = models.ForeignKey(StitchingCategory, on_delete=models.PROTECT, related_name="rules")
    path = models.CharField(max_length=255, help_text="Dotted payload path, e.g. traits.email or context.traits.email")
    priority = models.IntegerField(default=0, help_text="Higher wins among one event's values of a category.")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source", "event_type", "-priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "event_type", "category", "path"], name="stitching_rule_unique")
        ]

    def __str__(self) -> str:
        return f"{self.source.slug}/{self.event_type}: {self.path} → {self.category_id}"


class BlockedValue(models.Model):
    """A value that never links events (junk such as 'null' or a shared test address): normalised by its
    category's normaliser; with no category, stored trimmed and matched as each category's normaliser makes it."""

    category = models.ForeignKey(
        StitchingCategory, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: every category."
    )
    value = models.CharField(max_length=400)
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["category", "value"], name="blocked_value_unique", nulls_distinct=False)
        ]

    def __str__(self) -> str:
        return f"{self.category_id or '*'}: {self.value}"


class Identifier(models.Model):
    """One normalised identifier value of a category, and the customer entity it currently belongs to."""

    id = models.BigAutoField(primary_key=True)
    category = models.ForeignKey(StitchingCategory, on_delete=models.CASCADE, db_index=False)
    value = models.CharField(max_length=400, db_collation="C")
    # No database constraint (as on EventIdentifier's keys): the engine alone writes this derived column, and a
    # full restitch rewrites it for every identifier, where a deferred check per row costs more than the update.
    # The ORM still applies on_delete.
    customer_entity = models.ForeignKey(
        CustomerEntity,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="identifiers",
        db_constraint=False,
    )
    first_seen = models.DateTimeField(null=True, blank=True, help_text="Time of the first event that carried it.")

    class Meta:
        db_table = "stitching_identifiers"
        # Value first: a search by value alone (customers search) uses it, and building it after a first stitch
        # compares values (collation C) before the category, twice as fast as the other order.
        constraints = [models.UniqueConstraint(fields=["value", "category"], name="stitching_identifier_unique")]

    def __str__(self) -> str:
        return f"{self.category_id}:{self.value}"


class EventIdentifier(models.Model):
    """An identifier an event carried (the edges of the identity graph), and whether it was allowed to link."""

    class Status(models.TextChoices):
        LINKED = "linked", "Linked"
        BLOCKED = "blocked", "Refused: blocked value"
        LIMIT = "limit", "Refused: per-customer limit"
        HELD = "held", "Held for review: would join too many customers"

    # The edges are derived data, written only by the engine (a full restitch inserts every one of them): no
    # database foreign-key constraints, whose deferred per-row checks dominated that insert. The ORM still
    # applies on_delete; raw SQL that deletes events or identifiers (erasure) deletes their edges first.
    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(
        CustomerEvent, on_delete=models.CASCADE, db_index=False, related_name="+", db_constraint=False
    )
    identifier = models.ForeignKey(
        Identifier, on_delete=models.CASCADE, related_name="event_links", db_constraint=False
    )
    # No index on the rule: nothing looks edges up by rule, and deleting a rule (rare) may scan; a full restitch
    # builds every index of this table.
    rule = models.ForeignKey(
        StitchingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False,
        db_index=False,
    )  # fmt: skip
    # (Database defaults too: a full rebuild copies the linked pairs without these columns.)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LINKED, db_default=Status.LINKED)
    reason = models.CharField(max_length=300, blank=True, db_default="")

    class Meta:
        db_table = "stitching_event_identifiers"
        constraints = [
            models.UniqueConstraint(fields=["event", "identifier"], name="stitching_event_identifier_unique")
        ]
        indexes = [
            models.Index(fields=["status"], name="stitching_refused", condition=~models.Q(status="linked")),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} → identifier {self.identifier_id} ({self.status})"


class RefusedLink(EventIdentifier):
    """What the admin's *Refused links* page lists: the identity graph's edges that were not allowed to link."""

    class Meta:
        proxy = True
        verbose_name = "refused link"
        verbose_name_plural = "refused links"


class RestitchCause(models.TextChoices):
    """Why a component was re-stitched: recorded on the merges and splits it made (EntityChange.detail["cause"])."""

    VALUE_BLOCKED = "value_blocked", "a value was blocked"
    VALUE_UNBLOCKED = "value_unblocked", "a value was unblocked"
    RULE_CHANGED = "rule_changed", "a stitching rule changed"
    CATEGORY_CHANGED = "category_changed", "a stitching category changed"
    HUB_APPROVED = "hub_approved", "a held hub was approved"
    HUB_BLOCKED = "hub_blocked", "a held hub's value was blocked"
    ERASURE = "erasure", "a customer was erased"
    RESTITCH = "restitch", "a re-stitch was run"


class EntityChange(models.Model):
    """History of customer entities: merges, splits and erasures (when, which event, which identifier)."""

    class Kind(models.TextChoices):
        MERGE = "merge", "Merged"
        SPLIT = "split", "Split"
        ERASE = "erase", "Erased (GDPR)"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    customer_entity_id = models.CharField(
        max_length=32, db_index=True, db_collation="C", help_text="The surviving / affected entity."
    )
    other_entity_ids = models.JSONField(default=list, help_text="Entities merged into it, or split off from it.")
    event = models.ForeignKey(CustomerEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    identifier = models.ForeignKey(Identifier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]
        # What the admin's navigation calls them (the API keeps "entity changes").
        verbose_name = "merge history entry"
        verbose_name_plural = "merge history"
        # "Where did customer X go?": rows where X is among the merged-away / split-off entities.
        indexes = [GinIndex(fields=["other_entity_ids"], name="entity_change_others", opclasses=["jsonb_path_ops"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.customer_entity_id}"

    @property
    def cause_label(self) -> str:
        """Why it happened, in words ("a value was blocked"); empty for a merge an incoming event made."""
        cause = (self.detail or {}).get("cause")
        return str(RestitchCause(cause).label) if cause in RestitchCause.values else ""


class HubReview(models.Model):
    """An identifier that would suddenly join many customers: held until an administrator decides."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved: link"
        BLOCKED = "blocked", "Blocked the value"

    identifier = models.OneToOneField(Identifier, on_delete=models.CASCADE, related_name="hub_review")
    entity_count = models.PositiveIntegerField(help_text="How many customers it would have joined.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    decided = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.identifier.category_id}: {self.identifier.value} ({self.get_status_display().lower()})"


class RestitchRequest(models.Model):
    """A component to re-stitch after a configuration change (a blocked or unblocked value, a rule change, a hub
    decision): written in the change's transaction, so the split or join it causes is never lost to a failed
    request or a killed worker; `stitching.tasks.restitch_requested` (and the beat, every minute) works it off.
    One identifier or one customer per row."""

    identifier_id = models.BigIntegerField(null=True, blank=True)
    customer_entity_id = models.CharField(max_length=32, null=True, blank=True, db_collation="C")
    created = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Runs that failed on it so far.")
    cause = models.CharField(max_length=20, choices=RestitchCause.choices, blank=True, default="", db_default="")

    class Meta:
        db_table = "stitching_restitch_requests"
        # The claim's order: what failed least first.
        indexes = [models.Index(fields=["attempts", "id"], name="stitching_restitch_claim")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(identifier_id__isnull=False) | models.Q(customer_entity_id__isnull=False),
                name="stitching_restitch_request_target",
            )
        ]

    def __str__(self) -> str:
        return f"re-stitch {self.identifier_id or self.customer_entity_id}"
