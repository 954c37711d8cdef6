"""Users, roles and API tokens. Everything here needs the `users_admin` feature."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget

from cdp.admin.base import (
    FeatureAccessMixin,
    ServiceSaveMixin,
    changed_model_fields,
    render_confirmation,
    render_secret_once,
    user_has_feature,
)
from cdp.features import Feature
from cdp.models import ApiToken, Role, User
from cdp.services.auth import (
    role_create,
    role_update,
    role_validate_features,
    token_create,
    token_revoke,
    user_create,
    user_deactivate,
    user_update,
)

logger = logging.getLogger(__name__)

USER_PROFILE_FIELDS = ("username", "first_name", "last_name", "email", "role")


class UserCreateForm(UserCreationForm):
    """Unfold's creation form; the password is validated by AUTH_PASSWORD_VALIDATORS, as user_create does."""

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username",)


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"


class UserPasswordForm(AdminPasswordChangeForm):
    """Sets a new password through `user_update` (which validates it again)."""

    def save(self, commit: bool = True) -> User:
        password = self.cleaned_data.get("password1")
        if self.cleaned_data.get("set_usable_password", True) and password:
            return user_update(user=self.user, password=password)
        return super().save(commit=commit)  # "disable password-based login": no service needed for that


@admin.register(User)
class CdpUserAdmin(FeatureAccessMixin, ServiceSaveMixin, DjangoUserAdmin, ModelAdmin):
    view_feature = edit_feature = Feature.USERS_ADMIN

    form = UserEditForm
    add_form = UserCreateForm
    change_password_form = UserPasswordForm
    list_display = ("username", "full_name", "email", "role", "is_active", "is_superuser", "last_login")
    list_filter = ("role", "is_active", "is_superuser")
    list_select_related = ("role",)
    search_fields = ("username", "first_name", "last_name", "email")
    ordering = ("username",)
    filter_horizontal = ()
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Access",
            {
                "fields": ("role", "is_active", "is_superuser"),
                "description": "The role decides what the user may see and do. Superusers have every feature.",
            },
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "first_name",
                    "last_name",
                    "email",
                    "role",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined", "is_superuser")

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Only a superuser may change a superuser (their password, for one).
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    @display(description="Name")
    def full_name(self, obj: User) -> str:
        return obj.get_full_name() or "—"

    def service_create(self, request: HttpRequest, form: Form) -> User:
        data = form.cleaned_data
        password = data.get("password1") if data.get("set_usable_password", True) else None
        return user_create(
            username=data["username"],
            password=password or None,
            email=data.get("email", ""),
            role=data.get("role"),
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
        )

    def service_update(self, request: HttpRequest, obj: User, form: Form) -> None:
        fields = changed_model_fields(form, USER_PROFILE_FIELDS)
        if fields:
            user_update(user=obj, **fields)
        if "is_active" in form.changed_data:
            if form.cleaned_data["is_active"]:
                user_update(user=obj, is_active=True)
            else:
                user_deactivate(user=obj)  # also revokes their API tokens

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and obj.pk == request.user.pk:
            # Locking yourself out by accident is too easy: another administrator must deactivate you.
            readonly += ("is_active", "role")
        return readonly


class RoleForm(forms.ModelForm):
    features = forms.MultipleChoiceField(
        choices=Feature.choices,
        required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="What users with this role may see and do.",
    )

    class Meta:
        model = Role
        fields = ("name", "description", "features")

    def clean_features(self) -> list[str]:
        try:
            return role_validate_features(self.cleaned_data.get("features") or [])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["features"]) from None


@admin.register(Role)
class RoleAdmin(FeatureAccessMixin, ServiceSaveMixin, ModelAdmin):
    view_feature = edit_feature = Feature.USERS_ADMIN

    form = RoleForm
    list_display = ("name", "description", "features_display", "users_count", "modified")
    search_fields = ("name",)
    fields = ("name", "description", "features")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return super().get_queryset(request).annotate(users_count=Count("users"))

    @display(description="Features")
    def features_display(self, obj: Role) -> str:
        labels = dict(Feature.choices)
        return ", ".join(labels.get(f, f) for f in obj.features) or "— (none)"

    @display(description="Users", ordering="users_count")
    def users_count(self, obj: Role) -> int:
        return obj.users_count

    def service_create(self, request: HttpRequest, form: Form) -> Role:
        return role_create(**{name: form.cleaned_data[name] for name in ("name", "description", "features")})

    def service_update(self, request: HttpRequest, obj: Role, form: Form) -> None:
        role_update(role=obj, **changed_model_fields(form, ("name", "description", "features")))


class ApiTokenCreateForm(forms.ModelForm):
    # Each add page's own id: the page that shows the new key answers the POST, so a reload sends the form again,
    # and without this a second token would be made (and the first left working, its key never seen again).
    form_id = forms.CharField(widget=forms.HiddenInput, required=False, initial=lambda: secrets.token_hex(16))

    class Meta:
        model = ApiToken
        fields = ("user", "name", "expires")
        help_texts = {
            "user": "The token acts as this user, with their role's features.",
            "expires": "Leave empty for a token that works until revoked.",
        }

    def clean_expires(self):
        expires = self.cleaned_data.get("expires")
        if expires is not None and expires <= timezone.now():
            raise ValidationError("The expiry time must be in the future.")
        return expires


class TokenStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked__isnull=True).exclude(expires__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked__isnull=True, expires__lte=now)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(FeatureAccessMixin, ServiceSaveMixin, ModelAdmin):
    """Tokens are made (key shown once) and revoked, never edited; the key hash is never shown."""

    view_feature = edit_feature = Feature.USERS_ADMIN

    form = ApiTokenCreateForm
    list_display = ("key_display", "name", "user", "created", "last_used", "expires", "status_display")
    list_filter = (TokenStatusFilter, "user")
    list_select_related = ("user",)
    search_fields = ("name", "key_prefix", "user__username")
    search_help_text = "Token name, the first characters of the key, or a user name."
    actions = ("revoke_tokens",)
    readonly_fields = ("key_display", "user", "name", "created", "last_used", "expires", "revoked")
    actions_detail = ("revoke_token",)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None):
        if obj is None:
            return ("user", "name", "expires", "form_id")
        return ("key_display", "name", "user", "created", "last_used", "expires", "revoked")

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None):
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_has_feature(request, Feature.USERS_ADMIN)

    @display(description="Key")
    def key_display(self, obj: ApiToken) -> str:
        return f"{obj.key_prefix}…"

    @display(description="Status", label={"Active": "success", "Revoked": "danger", "Expired": "warning"})
    def status_display(self, obj: ApiToken) -> str:
        if obj.revoked is not None:
            return "Revoked"
        if obj.expires is not None and obj.expires <= timezone.now():
            return "Expired"
        return "Active"

    @staticmethod
    def _form_sent_key(form_id: str) -> str:
        return f"admin:token-form-sent:{form_id[:64]}"

    def _form_sent(self, form_id: str) -> bool:
        """Whether this form already made its token (the cache remembers it a day; without the cache: not known)."""
        try:
            return bool(cache.get(self._form_sent_key(form_id)))
        except Exception:  # noqa: BLE001 - Redis down: the form works, only a reload's guard is off
            logger.warning("token form: cache unavailable; cannot tell whether this form was already sent",
                           exc_info=True)  # fmt: skip
            return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        form_id = request.POST.get("form_id", "") if request.method == "POST" else ""
        if form_id and self._form_sent(form_id):
            messages.warning(
                request,
                "This form was already sent (the page was reloaded): its token was made and its key shown once. "
                "No second token was made. If the key was not copied, revoke that token and create another.",
            )
            return HttpResponseRedirect(reverse("admin:cdp_apitoken_changelist"))
        return super().add_view(request, form_url, extra_context)

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs: Any):
        if db_field.name == "user" and not request.user.is_superuser:
            # A token acting as a superuser would give a user administrator what no role gives (user_may_manage).
            kwargs["queryset"] = User.objects.filter(is_superuser=False)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def service_create(self, request: HttpRequest, form: Form) -> ApiToken:
        data = form.cleaned_data
        token, key = token_create(user=data["user"], name=data.get("name", ""), expires=data.get("expires"))
        if data.get("form_id"):
            try:
                cache.set(self._form_sent_key(data["form_id"]), token.pk, timeout=24 * 3600)
            except Exception:  # noqa: BLE001 - the token exists: show its key rather than a 500 that loses it
                logger.warning("token form: cache unavailable; a reload of this form would make another token",
                               exc_info=True)  # fmt: skip
        token.plain_key = key
        return token

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        return render_secret_once(
            request,
            self,
            title=f"API token for {obj.user.username} created",
            secret=obj.plain_key,
            label="API token",
            explanation="Send it as `Authorization: Token <token>`. Copy it now: it is stored only as a hash "
            "and will not be shown again.",
            continue_url=reverse("admin:cdp_apitoken_changelist"),
            obj=obj,
        )

    def _revoke(self, request: HttpRequest, tokens: QuerySet[ApiToken]) -> int:
        revoked = 0
        for token in tokens.filter(revoked__isnull=True):
            token_revoke(token=token)
            revoked += 1
        return revoked

    @action(description="Revoke selected tokens", permissions=["revoke"], icon="block")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> HttpResponse | None:
        if request.POST.get("confirm") != "yes":
            tokens = list(queryset.select_related("user"))
            return render_confirmation(
                request,
                self,
                title="Revoke API tokens?",
                question=f"These {len(tokens)} token(s) will stop working at once. This cannot be undone.",
                details=[f"{t.key_prefix}… {t.name or '(no name)'} — {t.user.username}" for t in tokens],
                confirm_label="Revoke",
                cancel_url=reverse("admin:cdp_apitoken_changelist"),
                hidden=[("action", "revoke_tokens")] + [(ACTION_CHECKBOX_NAME, t.pk) for t in tokens],
            )
        revoked = self._revoke(request, queryset)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
        return None

    @action(description="Revoke", url_path="revoke", permissions=["revoke"], icon="block")
    def revoke_token(self, request: HttpRequest, object_id: str) -> HttpResponse:
        tokens = ApiToken.objects.filter(pk=object_id)
        token = tokens.select_related("user").first()
        change_url = reverse("admin:cdp_apitoken_change", args=[object_id])
        if token is None:
            self.message_user(request, "No such token.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:cdp_apitoken_changelist"))
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title="Revoke this API token?",
                question="The token stops working at once. This cannot be undone.",
                details=[f"{token.key_prefix}… {token.name or '(no name)'} — {token.user.username}"],
                confirm_label="Revoke",
                cancel_url=change_url,
            )
        revoked = self._revoke(request, tokens)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
        return HttpResponseRedirect(change_url)
