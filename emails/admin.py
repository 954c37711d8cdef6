"""The email channel in the Business Explorer: channel settings, templates (with preview), addresses (block /
unblock with a reason, bulk block), rejected webhook payloads, imports (upload → Celery job with progress) and
campaigns (segment → job with progress and report). Every write calls a service."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import (
    UnfoldAdminFileFieldWidget,
    UnfoldAdminPasswordWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanWidget,
)

from cdp.admin.base import FeatureAccessMixin, render_confirmation, render_secret_once, user_has_feature
from cdp.features import Feature
from cdp.services.idempotency import (
    Outcome,
    idempotent_claim_release,
    idempotent_request_claim,
    idempotent_response_save,
    request_fingerprint,
)
from emails import selectors
from emails.models import Campaign, EmailAddress, EmailChannel, EmailTemplate, FeedbackInbox, FeedbackRejection, Job
from emails.services.campaigns import (
    campaign_create,
    campaign_failure_reasons,
    campaign_pause,
    campaign_report,
    campaign_resume,
)
from emails.services.channel import (
    EDITABLE_FIELDS,
    channel_get,
    channel_update,
    channel_validate,
    webhook_secret_rotate,
)
from emails.services.imports import import_job_create
from emails.services.state import EVENT_NAMES, EmailInvalid, email_block, email_normalize, email_unblock
from emails.services.templates import (
    TEMPLATE_FIELDS,
    subject_problem,
    template_create,
    template_preview,
    template_update,
)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def _progress_bar(percent: int, label: str = "") -> str:
    return format_html(
        '<div class="em-progress" title="{}%" style="min-width:120px"><div style="background:#e5e7eb;'
        'border-radius:6px;height:8px;overflow:hidden"><div style="background:#4f46e5;height:8px;width:{}%">'
        '</div></div><small>{}</small></div>',
        percent, percent, label or f"{percent}%",
    )  # fmt: skip


# --- channel ---------------------------------------------------------------------------------------------------


def _url_https(field: models.Field, **kwargs: Any) -> forms.Field | None:
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class ChannelForm(forms.ModelForm):
    # The theme's widgets: Django's bare password input has no border, so the field could not be seen at all.
    credentials = forms.CharField(
        required=False,
        widget=UnfoldAdminPasswordWidget(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Password / API key",
        help_text="SMTP password or the provider's API key. Stored encrypted and never shown again; "
        "leave empty to keep the current one.",
    )
    clear_credentials = forms.BooleanField(
        required=False, widget=UnfoldBooleanWidget, label="Remove the stored password / API key"
    )

    class Meta:
        model = EmailChannel
        fields = EDITABLE_FIELDS
        formfield_callback = _url_https
        # The fields' names as a marketer reads them ("Smtp host", "Public base url" otherwise).
        labels = {
            "smtp_host": "SMTP host", "smtp_port": "SMTP port", "smtp_username": "SMTP user name",
            "smtp_security": "SMTP security", "api_base_url": "API base URL", "public_base_url": "Public base URL",
            "subscribe_page_url": "Subscribe page URL", "unsubscribe_page_url": "Unsubscribe page URL",
            "confirmed_page_url": "Confirmed page URL", "opt_in_frequency_hours": "Opt-in frequency (hours)",
            "opt_in_link_valid_days": "Opt-in link valid for (days)", "opt_in_subject": "Opt-in subject",
            "opt_in_body": "Opt-in text",
        }  # fmt: skip

    def clean(self) -> dict:
        """channel_update's checks, as errors on the form's fields (raised from save_model they were a 500)."""
        data = super().clean()
        candidate = copy.copy(self.instance)
        for name in EDITABLE_FIELDS:
            if name in data and name not in self.errors:
                setattr(candidate, name, data[name])
        if not self.errors:
            channel_validate(candidate, changed=self.changed_data)
        return data


@admin.register(EmailChannel)
class EmailChannelAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EMAILS_VIEW
    edit_feature = Feature.SETTINGS_EDIT
    form = ChannelForm
    formfield_overrides = {
        **ModelAdmin.formfield_overrides,
        models.URLField: {**ModelAdmin.formfield_overrides.get(models.URLField, {}), "assume_scheme": "https"},
    }
    readonly_fields = ("credentials_status", "webhook_secret_status", "feedback_urls", "modified")
    fieldsets = (
        ("Sender and provider", {"fields": ("provider", "sender_email", "sender_name", "send_rate_per_second")}),
        ("SMTP", {"fields": ("smtp_host", "smtp_port", "smtp_username", "smtp_security")}),
        ("API (Brevo, Infobip)", {"fields": ("api_base_url",)}),
        ("Credentials", {"fields": ("credentials_status", "credentials", "clear_credentials")}),
        (
            "Pages and links",
            {"fields": ("public_base_url", "subscribe_page_url", "unsubscribe_page_url", "confirmed_page_url")},
        ),  # fmt: skip
        (
            "Double opt-in",
            {"fields": ("opt_in_frequency_hours", "opt_in_link_valid_days", "opt_in_subject", "opt_in_body")},
        ),  # fmt: skip
        ("Provider webhooks", {"fields": ("webhook_provider", "webhook_secret_status", "feedback_urls")}),
        ("History", {"fields": ("modified",)}),
    )
    actions_detail = ("rotate_webhook_secret",)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # One channel: the list is its settings page.
        return HttpResponseRedirect(reverse("admin:emails_emailchannel_change", args=[channel_get().pk]))

    @display(description="Stored password / API key")
    def credentials_status(self, obj: EmailChannel) -> str:
        return obj.credentials_hint or "— (none)"

    @display(description="Webhook secret")
    def webhook_secret_status(self, obj: EmailChannel) -> str:
        return f"{obj.webhook_secret_prefix}… (set)" if obj.webhook_secret_hash else "— (not set: webhooks get 401)"

    @display(description="Feedback URLs")
    def feedback_urls(self, obj: EmailChannel) -> str:
        base = obj.public_base_url.rstrip("/") if obj.public_base_url else ""
        return format_html_join(
            "", "<div><code>{}</code> ({})</div>",
            [(base + reverse("emails:feedback"), "the configured provider"),
             (base + reverse("emails:feedback-provider", args=["brevo"]), "Brevo"),
             (base + reverse("emails:feedback-provider", args=["infobip"]), "Infobip")],
        )  # fmt: skip

    def save_model(self, request: HttpRequest, obj: EmailChannel, form: forms.Form, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS if name in form.changed_data}
        secret = form.cleaned_data.get("credentials") or None
        if form.cleaned_data.get("clear_credentials"):
            secret = ""
        channel_update(user=request.user, credentials=secret, **fields)

    @action(description="New webhook secret", url_path="rotate-webhook-secret", permissions=["change"], icon="key")
    def rotate_webhook_secret(self, request: HttpRequest, object_id: str) -> HttpResponse:
        change_url = reverse("admin:emails_emailchannel_change", args=[object_id])
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            from cdp.admin.base import render_confirmation

            return render_confirmation(
                request, self, title="Make a new webhook secret?",
                question="Provider webhooks that use the current secret will be refused (401) until they are "
                "given the new one.",
                details=["Brevo: basic auth in the webhook URL, or an Authorization: Bearer header.",
                         "Infobip: the notification profile's authentication (basic or API key header)."],
                confirm_label="Make a new secret", cancel_url=change_url,
            )  # fmt: skip
        secret = webhook_secret_rotate()
        return render_secret_once(
            request, self, title="New webhook secret", secret=secret, label="Webhook secret",
            explanation="Configure it in the provider's webhook now: it is stored only as a hash.",
            continue_url=change_url, obj=channel_get(),
        )  # fmt: skip


# --- templates -------------------------------------------------------------------------------------------------


class TemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = TEMPLATE_FIELDS
        help_texts = {
            "html_body": "Placeholders: {{ email }}, {{ unsubscribe_url }}, {{ campaign_name }}, {{ campaign_id }}, "
            "{{ subject }}, {{ message_id }}. Without {{ unsubscribe_url }} a link is added to the text part.",
        }

    def clean(self) -> dict:
        data = super().clean()
        if not (data.get("html_body") or "").strip() and not (data.get("text_body") or "").strip():
            raise ValidationError("A template needs an HTML or a text body (or both).")
        if problem := subject_problem(data.get("subject")):
            self.add_error("subject", problem)  # (raised from save_model by the service: a 500)
        return data


@admin.register(EmailTemplate)
class EmailTemplateAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EMAILS_VIEW
    edit_feature = Feature.EMAILS_SEND
    form = TemplateForm
    list_display = ("name", "subject", "modified")
    search_fields = ("name", "subject")
    actions_detail = ("preview",)

    def save_model(self, request: HttpRequest, obj: EmailTemplate, form: forms.Form, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in TEMPLATE_FIELDS}
        if change:
            template_update(template=obj, **fields)
        else:
            obj.pk = template_create(user=request.user, **fields).pk

    @action(description="Preview", url_path="preview", permissions=["view"], icon="visibility")
    def preview(self, request: HttpRequest, object_id: str) -> HttpResponse:
        template = get_object_or_404(EmailTemplate, pk=object_id)
        rendered = template_preview(template=template)
        context = {**self.admin_site.each_context(request), "title": f"Preview: {template.name}",
                   "opts": self.model._meta, "preview": rendered, "template": template}  # fmt: skip
        return TemplateResponse(request, "emails/admin/template_preview.html", context)


# --- addresses: state, block / unblock -------------------------------------------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
        help_text="Recorded with the event and your name.",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("A reason is required.")
        return reason


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return fallback


class ConsentFilter(admin.SimpleListFilter):
    title = "consent"
    parameter_name = "consent"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("true", "Subscribed"), ("false", "Unsubscribed"), ("unknown", "Never asked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "true":
            return queryset.filter(consent=True)
        if value == "false":
            return queryset.filter(consent=False)
        if value == "unknown":
            return queryset.filter(consent__isnull=True)
        return queryset


@admin.register(EmailAddress)
class EmailAddressAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EMAILS_VIEW
    edit_feature = None  # state changes only through the block / unblock views and actions
    list_display = ("email", "consent_display", "blocked_display", "blocked_reason", "blocked_by", "modified")
    list_filter = (ConsentFilter, "blocked")
    search_fields = ("email",)
    readonly_fields = (
        "email", "consent", "consent_changed", "consent_source", "blocked", "blocked_reason", "blocked_by",
        "blocked_at", "soft_bounces_in_row", "opt_in_sent_at", "subscription_requested_at",
        "subscription_request_source", "subscription_request_id", "events_display",
    )  # fmt: skip
    fields = readonly_fields
    actions = ("block_selected",)
    actions_detail = ("block_address", "unblock_address")
    actions_list = ("download_suppression_list",)

    # Without `permissions` unfold checks nothing: any staff user (no role) downloaded the addresses.
    @action(
        description="Download suppression list (CSV)", url_path="suppression-list", permissions=["view"],
        icon="download",
    )  # fmt: skip
    def download_suppression_list(self, request: HttpRequest) -> HttpResponse:
        """Blocked and unsubscribed addresses, `email,reason` (loads as a block list here or elsewhere)."""
        from emails.api.views import suppression_list_response

        return suppression_list_response()

    def has_block_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_has_feature(request, Feature.EMAILS_BLOCK)

    @display(description="Consent")
    def consent_display(self, obj: EmailAddress) -> str:
        return {True: "✔ subscribed", False: "✘ unsubscribed"}.get(obj.consent, "— never asked")

    @display(description="Blocked", boolean=True)
    def blocked_display(self, obj: EmailAddress) -> bool:
        return obj.blocked

    @display(description="Events that led here")
    def events_display(self, obj: EmailAddress) -> str:
        rows = [(e.event_time.strftime("%Y-%m-%d %H:%M:%S"), EVENT_NAMES.get(e.type, e.type),
                 ", ".join(f"{k}: {v}" for k, v in sorted(e.payload.items()) if k not in {"email", "type"}))
                for e in selectors.address_events(email=obj.email, limit=50)]  # fmt: skip
        if not rows:
            return "—"
        return format_html(
            '<table class="em-events">{}</table>',
            format_html_join("", "<tr><td>{}</td><td><b>{}</b></td><td>{}</td></tr>", rows),
        )

    def get_urls(self):
        return [
            path("block/", self.admin_site.admin_view(self.block_view), name="emails_emailaddress_block"),
            path("unblock/", self.admin_site.admin_view(self.unblock_view), name="emails_emailaddress_unblock"),
            *super().get_urls(),
        ]

    def _reason_view(self, request: HttpRequest, *, block: bool, emails: list[str], next_url: str,
                     action_name: str = "") -> HttpResponse:  # fmt: skip
        if not self.has_block_permission(request):
            messages.error(request, "Your role cannot block or unblock addresses.")
            return HttpResponseRedirect(next_url)
        form = ReasonForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_bound and form.is_valid():
            change = email_block if block else email_unblock
            changed = sum(change(email=e, reason=form.cleaned_data["reason"], user=request.user) for e in emails)
            verb = "blocked" if block else "unblocked"
            unchanged = f" ({len(emails) - changed} already {verb})" if changed < len(emails) else ""
            messages.success(request, f"{changed} address{'es' if changed != 1 else ''} {verb}{unchanged}.")
            return HttpResponseRedirect(next_url)
        verb = "Block" if block else "Unblock"
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "emails": emails,
            "title": f"{verb} {emails[0] if len(emails) == 1 else f'{len(emails)} addresses'}",
            "confirm_label": verb, "block": block, "next": next_url, "action_name": action_name,
            "cancel_url": next_url, "selected": request.POST.getlist("_selected_action"),
            "select_across": request.POST.get("select_across", "0"),
        }  # fmt: skip
        return TemplateResponse(request, "emails/admin/reason_form.html", context)

    def _emails_from_request(self, request: HttpRequest) -> list[str]:
        raw = request.POST.get("email") or request.GET.get("email") or ""
        try:
            return [email_normalize(raw)]
        except EmailInvalid:
            return []

    def _address_view(self, request: HttpRequest, *, block: bool) -> HttpResponse:
        next_url = _safe_next(request, reverse("admin:emails_emailaddress_changelist"))
        emails = self._emails_from_request(request)
        if not emails:
            messages.error(request, "Not a valid email address.")
            return HttpResponseRedirect(next_url)
        return self._reason_view(request, block=block, emails=emails, next_url=next_url)

    def block_view(self, request: HttpRequest) -> HttpResponse:
        """/admin/emails/emailaddress/block/?email=...&next=... (the profile page's Block button)."""
        return self._address_view(request, block=True)

    def unblock_view(self, request: HttpRequest) -> HttpResponse:
        return self._address_view(request, block=False)

    @action(description="Block", url_path="block-address", permissions=["block"], icon="block")
    def block_address(self, request: HttpRequest, object_id: str) -> HttpResponse:
        address = get_object_or_404(EmailAddress, pk=object_id)
        back = reverse("admin:emails_emailaddress_change", args=[address.pk])
        return self._reason_view(request, block=True, emails=[address.email], next_url=back)

    @action(description="Unblock", url_path="unblock-address", permissions=["block"], icon="check_circle")
    def unblock_address(self, request: HttpRequest, object_id: str) -> HttpResponse:
        address = get_object_or_404(EmailAddress, pk=object_id)
        back = reverse("admin:emails_emailaddress_change", args=[address.pk])
        return self._reason_view(request, block=False, emails=[address.email], next_url=back)

    @admin.action(description="Block selected addresses", permissions=["block"])
    def block_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Intermediate form asking the reason; it posts the action again with `confirm=yes`."""
        emails = list(queryset.values_list("email", flat=True)[:10_000])
        back = reverse("admin:emails_emailaddress_changelist")
        return self._reason_view(request, block=True, emails=emails, next_url=back, action_name="block_selected")


# --- rejected webhook payloads ---------------------------------------------------------------------------------


@admin.register(FeedbackRejection)
class FeedbackRejectionAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EMAILS_VIEW
    list_display = ("received", "provider", "reason")
    list_filter = ("provider",)
    readonly_fields = ("received", "provider", "reason", "content_type", "body_display")
    fields = readonly_fields

    @display(description="Body as received")
    def body_display(self, obj: FeedbackRejection) -> str:
        return format_html('<pre style="white-space:pre-wrap;max-width:80ch">{}</pre>', obj.body)


@admin.register(FeedbackInbox)
class FeedbackInboxAdmin(FeatureAccessMixin, ModelAdmin):
    """Accepted webhook payloads a worker has not applied yet: normally empty within seconds; a growing list means
    no Celery worker is taking `emails.tasks.feedback_apply`."""

    view_feature = Feature.EMAILS_VIEW
    list_display = ("received", "provider", "event_count")
    list_filter = ("provider",)
    readonly_fields = ("received", "provider", "events")
    fields = readonly_fields

    @display(description="Events")
    def event_count(self, obj: FeedbackInbox) -> int:
        return len(obj.events) if isinstance(obj.events, list) else 0


# --- imports ---------------------------------------------------------------------------------------------------


class ImportUploadForm(forms.Form):
    # (Unfold's widgets: Django's bare ones render unstyled, a text box without a border.)
    kind = forms.ChoiceField(choices=Job.Kind.choices, label="What the file holds", widget=UnfoldAdminSelectWidget)
    file = forms.FileField(widget=UnfoldAdminFileFieldWidget, help_text="CSV with a header. Contact list: email, "
                           "consent, subscription_source?, timestamp?. Block list: email, reason?.")  # fmt: skip

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise ValidationError(f"At most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
        try:
            upload.text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError("The file is not UTF-8 text.") from None
        return upload


@admin.register(Job)
class ImportJobAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EMAILS_VIEW
    edit_feature = Feature.EMAILS_BLOCK
    list_display = ("__str__", "file_name", "status", "progress_display", "message", "created")
    list_filter = ("kind", "status")
    readonly_fields = ("kind", "status", "file_name", "progress_display", "message", "bad_rows_display", "created",
                       "finished", "created_by")  # fmt: skip
    fields = readonly_fields
    change_form_template = "emails/admin/job_change_form.html"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        unfinished = (Job.Status.QUEUED, Job.Status.RUNNING)
        live = str(object_id).isdigit() and Job.objects.filter(pk=object_id, status__in=unfinished).exists()
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "job_live": live})

    @display(description="Progress")
    def progress_display(self, obj: Job) -> str:
        return _progress_bar(obj.percent, f"{obj.processed} / {obj.total} rows")

    @display(description="Bad rows")
    def bad_rows_display(self, obj: Job) -> str:
        rows = (obj.result or {}).get("bad_rows") or []
        if not rows:
            return "—"
        # The admin's theme resets table cells' padding: without its own, "line 302" ran into the reason.
        return format_html("<table class=\"em-bad-rows\">{}</table>", format_html_join(
            "", '<tr><td style="padding-right:16px;white-space:nowrap">line {}</td><td>{}</td></tr>',
            [(r["line"], r["error"]) for r in rows]))  # fmt: skip

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):  # (ModelAdmin.add_view's check, which this view replaces)
            raise PermissionDenied
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            job = import_job_create(kind=form.cleaned_data["kind"], file_name=upload.name, text=upload.text,
                                    user=request.user)  # fmt: skip
            messages.success(request, f"Import #{job.pk} started: {job.total} rows.")
            return HttpResponseRedirect(reverse("admin:emails_job_change", args=[job.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Import a contact list or block list"}  # fmt: skip
        return TemplateResponse(request, "emails/admin/upload.html", context)


# --- campaigns -------------------------------------------------------------------------------------------------


class CampaignForm(forms.Form):
    # One per form shown: the Start button pressed twice (or the form sent again from the browser's history) starts
    # one campaign, not two that each mail the whole segment.
    submission = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput)
    name = forms.CharField(max_length=200, widget=UnfoldAdminTextInputWidget)
    template = forms.ModelChoiceField(queryset=EmailTemplate.objects.all(), widget=UnfoldAdminSelectWidget)
    segment = forms.TypedChoiceField(coerce=int, widget=UnfoldAdminSelectWidget,
                                     help_text="Only members with consent and not blocked get it.")  # fmt: skip

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from segments.selectors import segments_visible

        self.fields["segment"].choices = [(s.pk, s.name) for s in segments_visible(user=user)[:500]]


@admin.register(Campaign)
class CampaignAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EMAILS_VIEW
    edit_feature = Feature.EMAILS_SEND
    list_display = ("name", "template", "segment_display", "status", "progress_display", "sent", "skipped", "failed",
                    "created")  # fmt: skip
    list_filter = ("status",)
    readonly_fields = ("name", "template", "segment_display", "status", "progress_display", "report_display",
                       "message", "created", "started", "finished")  # fmt: skip
    fields = readonly_fields
    actions_detail = ("pause_campaign", "resume_campaign")
    change_form_template = "emails/admin/campaign_change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        from segments.models import Segment
        from segments.selectors import segments_visible

        visible = segments_visible(user=request.user, trashed=None).values("pk")
        segment_name = Segment.objects.filter(pk=models.OuterRef("segment_id")).values("name")[:1]
        return (
            super().get_queryset(request).select_related("template").filter(segment_id__in=visible)
            .annotate(segment_name=models.Subquery(segment_name))
        )  # fmt: skip

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        live = (
            str(object_id).isdigit() and Campaign.objects.filter(pk=object_id, status__in=Campaign.UNFINISHED).exists()
        )
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "campaign_live": live})

    @display(description="Segment")
    def segment_display(self, obj: Campaign) -> str:
        url = reverse("admin:segments_segment_change", args=[obj.segment_id])
        return format_html('<a class="text-primary-600" href="{}">{}</a>', url, obj.segment_name or obj.segment_id)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_send_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_has_feature(request, self.edit_feature)

    def get_actions_detail(self, request: HttpRequest, object_id: Any) -> list:
        """Pause while the campaign is unfinished, Resume while it is paused (the URLs stay: a page left open
        meanwhile gets a message saying why nothing happened)."""
        status = (
            Campaign.objects.filter(pk=object_id).values_list("status", flat=True).first()
            if str(object_id).isdigit()
            else None
        )
        wanted = {"pause_campaign"} if status in Campaign.UNFINISHED else set()
        wanted |= {"resume_campaign"} if status == Campaign.Status.PAUSED else set()
        return [a for a in super().get_actions_detail(request, object_id) if a.method.__name__ in wanted]

    def _campaign_decide(self, request: HttpRequest, object_id: str, *, pause: bool) -> HttpResponse:
        campaign = self.get_queryset(request).filter(pk=object_id).first() if str(object_id).isdigit() else None
        if campaign is None:
            self.message_user(request, "No such campaign.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:emails_campaign_changelist"))
        change_url = reverse("admin:emails_campaign_change", args=[campaign.pk])
        verb = "Pause" if pause else "Resume"
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            question = (
                "Sending stops within a second; the recipients not mailed yet wait until you resume it."
                if pause
                else "Sending goes on to the recipients not mailed yet (the audience prepared before the pause)."
            )
            return render_confirmation(
                request, self, title=f"{verb} the campaign “{campaign.name}”?", question=question,
                details=[f"{campaign.sent} sent, {campaign.skipped} skipped, {campaign.failed} failed of "
                         f"{campaign.total}."],
                confirm_label=verb, cancel_url=change_url, danger=False,
            )  # fmt: skip
        try:
            (campaign_pause if pause else campaign_resume)(campaign=campaign)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.WARNING)
        else:
            self.message_user(request, f"Campaign “{campaign.name}” {'paused' if pause else 'resumed'}.")
        return HttpResponseRedirect(change_url)

    @action(description="Pause", url_path="pause", permissions=["send"], icon="pause")
    def pause_campaign(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._campaign_decide(request, object_id, pause=True)

    @action(description="Resume", url_path="resume", permissions=["send"], icon="play_arrow")
    def resume_campaign(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._campaign_decide(request, object_id, pause=False)

    @display(description="Progress")
    def progress_display(self, obj: Campaign) -> str:
        done = obj.sent + obj.skipped + obj.failed
        return _progress_bar(obj.percent, f"{done} / {obj.total}")

    @display(description="Report")
    def report_display(self, obj: Campaign) -> str:
        report = campaign_report(campaign=obj)
        skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(report["skipped"].items())) or "none"
        summary = format_html("Sent {} · failed {} · pending {} · skipped {}", report["sent"], report["failed"],
                              report["pending"], skipped)  # fmt: skip
        if not report["failed"]:
            return summary
        reasons = format_html_join("", "<li>{} ({})</li>", campaign_failure_reasons(campaign=obj))
        return format_html('{}<div class="em-failed-reasons">Why sending failed:<ul>{}</ul></div>', summary, reasons)

    def _campaign_start(self, request: HttpRequest, form: CampaignForm) -> HttpResponse | None:
        """Start the form's campaign, once per form shown (its `submission` claims an idempotency key: a second
        POST of the same form goes to the campaign the first one started); None with the form's error otherwise."""
        claim = None
        if submission := form.cleaned_data.get("submission"):
            outcome, saved = idempotent_request_claim(
                user_id=request.user.pk, key=f"admin:emails_campaign_add:{submission}",
                fingerprint=request_fingerprint(method="POST", path=request.path, query="", data=submission),
            )  # fmt: skip
            if outcome is Outcome.DONE:
                messages.info(request, "This form was sent before: the campaign it started is below.")
                return HttpResponseRedirect(saved.location)
            if outcome is Outcome.RUNNING:
                form.add_error(None, "This form was sent twice: the campaign is being started by the first one.")
                return None
            claim = saved
        try:
            campaign = campaign_create(name=form.cleaned_data["name"], template=form.cleaned_data["template"],
                                       segment_id=form.cleaned_data["segment"], user=request.user)  # fmt: skip
        except BaseException as exc:
            if claim is not None:
                idempotent_claim_release(claim=claim)
            if not isinstance(exc, ValidationError):
                raise
            form.add_error(None, " ".join(exc.messages))
            return None
        location = reverse("admin:emails_campaign_change", args=[campaign.pk])
        if claim is not None:
            idempotent_response_save(claim=claim, status_code=302, content_type="", location=location, content=b"")
        messages.success(request, f"Campaign “{campaign.name}” started.")
        return HttpResponseRedirect(location)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):  # (ModelAdmin.add_view's check, which this view replaces)
            raise PermissionDenied
        form = CampaignForm(request.POST or None, user=request.user, initial={"submission": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            started = self._campaign_start(request, form)
            if started is not None:
                return started
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Send a template to a segment"}  # fmt: skip
        return TemplateResponse(request, "emails/admin/upload.html", context)
