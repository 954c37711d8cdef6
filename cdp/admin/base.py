"""Shared pieces of the Business Explorer: feature-based access, service-backed saving, secret pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin as DjangoModelAdmin
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse


def user_has_feature(request: HttpRequest, feature: str | None) -> bool:
    """True when the request's user may use `feature` in the admin (active staff whose role has it)."""
    user = getattr(request, "user", None)
    if feature is None or user is None or not user.is_authenticated:
        return False
    return bool(user.is_active and user.is_staff and user.has_feature(feature))


class FeatureAccessMixin:
    """Admin access from role features instead of Django model permissions.

    `view_feature` lets a user see the pages; `edit_feature` lets them add and change (and implies viewing).
    Deleting is off: rows are removed (if at all) through services, never by the generic delete view.
    """

    view_feature: str | None = None
    edit_feature: str | None = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return user_has_feature(request, self.view_feature) or user_has_feature(request, self.edit_feature)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return user_has_feature(request, self.edit_feature)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return user_has_feature(request, self.edit_feature)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """An action's selection holding something that is no id of these rows (a number expected, a NUL
        character) does nothing and says so, instead of failing in the query."""
        field = self.model._meta.pk
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                if "\x00" in value:
                    raise ValidationError("NUL")
                field.to_python(value)
            except (ValidationError, ValueError, TypeError):
                self.message_user(
                    request, "The selection holds something that is not an id of these rows: nothing was done.",
                    messages.ERROR,
                )  # fmt: skip
                return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


class ServiceSaveMixin(DjangoModelAdmin):
    """Route the admin's add and change saves through services instead of `form.save()`.

    Subclasses implement `service_create(request, form) -> obj` and `service_update(request, obj, form)`.
    A service that raises ValidationError on create can only do so after the form validated, so the form
    must validate the same things (they use the model's `full_clean`, as the services do).
    """

    def service_create(self, request: HttpRequest, form: Form) -> Model:
        raise NotImplementedError

    def service_update(self, request: HttpRequest, obj: Model, form: Form) -> None:
        raise NotImplementedError

    def save_form(self, request: HttpRequest, form: Form, change: bool) -> Model:
        if change:
            return form.save(commit=False)
        # Create through the service; the admin then logs the addition and redirects as usual.
        return self.service_create(request, form)

    def save_model(self, request: HttpRequest, obj: Model, form: Form, change: bool) -> None:
        if change:
            self.service_update(request, obj, form)

    def save_related(self, request: HttpRequest, form: Form, formsets: Any, change: bool) -> None:
        # Our models have no many-to-many fields or inlines that the generic path would have to save.
        return None


def changed_model_fields(form: Form, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The cleaned values of the model fields among `names` that the form changed."""
    return {name: form.cleaned_data[name] for name in names if name in form.changed_data and name in form.cleaned_data}


def render_secret_once(
    request: HttpRequest,
    model_admin: DjangoModelAdmin,
    *,
    title: str,
    secret: str,
    label: str,
    explanation: str,
    continue_url: str,
    obj: Model | None = None,
) -> HttpResponse:
    """A page that shows a freshly made secret (write key, API token) this once.

    Rendered as the response to the POST that made the secret instead of a message after a redirect, so
    the plain secret never travels in a cookie or the session.
    """
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "original": obj,
        "secret": secret,
        "secret_label": label,
        "explanation": explanation,
        "continue_url": continue_url,
    }
    response = TemplateResponse(request, "cdp/admin/secret_once.html", context)
    # The page holds a secret: never cache it, not even in the browser's back/forward cache.
    response["Cache-Control"] = "no-store"
    return response


def delete_each(
    model_admin: DjangoModelAdmin, request: HttpRequest, objects: list, delete: Callable[[Any], None],
    name: Callable[[Any], str],
) -> int:  # fmt: skip
    """Delete each of `objects` through its service (`delete`); one the service refuses (still in use) stays, and
    its message, headed by `name(obj)`, tells the user why. Returns how many were deleted."""
    deleted = 0
    for obj in objects:
        try:
            delete(obj)
        except ValidationError as exc:
            model_admin.message_user(request, f"{name(obj)}: {' '.join(exc.messages)}", messages.WARNING)
        else:
            deleted += 1
    return deleted


def render_confirmation(
    request: HttpRequest,
    model_admin: DjangoModelAdmin,
    *,
    title: str,
    question: str,
    details: list[str],
    confirm_label: str,
    cancel_url: str,
    hidden: dict[str, Any] | list[tuple[str, Any]] | None = None,
    danger: bool = True,
) -> HttpResponse:
    """An intermediate "are you sure?" page that POSTs back to the same URL with `confirm=yes`."""
    items = list(hidden.items()) if isinstance(hidden, dict) else list(hidden or [])
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "question": question,
        "details": details,
        "confirm_label": confirm_label,
        "cancel_url": cancel_url,
        "hidden": items,
        "danger": danger,
    }
    return TemplateResponse(request, "cdp/admin/confirm.html", context)
