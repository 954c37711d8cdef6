"""Email templates: create / update / delete and the preview a marketer sees before sending."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from emails.models import EmailTemplate
from emails.rendering import PLACEHOLDER, html_to_text, render_html, render_text

# What a campaign fills in; anything else in {{ }} is left as typed (and the preview warns about it).
PLACEHOLDERS = ("email", "unsubscribe_url", "campaign_id", "campaign_name", "subject", "message_id")
TEMPLATE_FIELDS = ("name", "subject", "html_body", "text_body")


def _validate(template: EmailTemplate) -> None:
    if not template.html_body.strip() and not template.text_body.strip():
        raise ValidationError({"html_body": "A template needs an HTML or a text body (or both)."})
    if problem := subject_problem(template.subject):
        raise ValidationError({"subject": problem})
    template.full_clean()


def subject_problem(subject: str | None) -> str | None:
    """Why the subject cannot be an email's, or None."""
    if any(c in (subject or "") for c in "\r\n"):
        # (An email header is one line: every send of it would fail, and "\r\nBcc: ..." is a header injection.)
        return "The subject must be one line: it holds a line break."
    return None


@transaction.atomic
def template_create(*, user: Any = None, **fields: Any) -> EmailTemplate:
    unknown = set(fields) - set(TEMPLATE_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "Unknown field."})
    template = EmailTemplate(**fields, created_by=user if getattr(user, "pk", None) else None)
    _validate(template)
    template.save()
    return template


@transaction.atomic
def template_update(*, template: EmailTemplate, **fields: Any) -> EmailTemplate:
    unknown = set(fields) - set(TEMPLATE_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "Unknown field."})
    for name, value in fields.items():
        setattr(template, name, value)
    _validate(template)
    template.save()
    return template


@transaction.atomic
def template_delete(*, template: EmailTemplate) -> None:
    try:
        template.delete()
    except ProtectedError:
        raise ValidationError({"id": "Campaigns used this template; it cannot be deleted."}) from None


@dataclass
class Preview:
    subject: str
    html: str
    text: str
    unknown_placeholders: list[str]


def _placeholders_used(template: EmailTemplate) -> set[str]:
    return {m.group(1) for field in (template.subject, template.html_body, template.text_body)
            for m in PLACEHOLDER.finditer(field)}  # fmt: skip


def template_render(template: EmailTemplate, values: dict[str, Any]) -> Preview:
    used = _placeholders_used(template)
    html = render_html(template.html_body, values)
    return Preview(
        # One line whatever the values hold (a campaign name with a line break): an email header cannot hold two.
        subject=re.sub(r"\s*[\r\n]+\s*", " ", render_text(template.subject, values)),
        html=html,
        # A template written in HTML only gets the text part of its HTML: an empty one is what a reader that shows
        # plain text (and a spam filter) saw.
        text=render_text(template.text_body, values) if template.text_body.strip() else html_to_text(html),
        unknown_placeholders=sorted(used - set(values)),
    )


def template_unknown_placeholders(template: EmailTemplate) -> list[str]:
    """The `{{ name }}`s of the template a campaign cannot fill in (sent as typed: "Hello {{ first_name }}")."""
    return sorted(_placeholders_used(template) - set(PLACEHOLDERS))


def template_preview(*, template: EmailTemplate, email: str = "jane.doe@example.com") -> Preview:
    """The template as a recipient would see it, with sample campaign values."""
    values = {
        "email": email, "campaign_id": "preview", "campaign_name": "Preview campaign", "subject": template.subject,
        "message_id": "preview-message", "unsubscribe_url": "https://example.com/email/unsubscribe.html?email=" + email,
    }  # fmt: skip
    return template_render(template, values)
