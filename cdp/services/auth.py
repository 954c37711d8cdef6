"""Users, roles and API tokens."""

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import update_last_login
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cdp.features import ALL_FEATURES
from cdp.models import ApiToken, Role, User
from cdp.services.secrets import secret_digest, secret_display_prefix, secret_generate

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "cdp"  # noqa: S105 - a label, not a secret


def role_validate_features(features: list[str]) -> list[str]:
    unknown = sorted(set(features) - ALL_FEATURES)
    if unknown:
        raise ValidationError({"features": f"Unknown feature(s): {', '.join(unknown)}."})
    return sorted(set(features))


@transaction.atomic
def role_create(*, name: str, features: list[str], description: str = "") -> Role:
    role = Role(name=name, description=description, features=role_validate_features(features))
    role.full_clean()
    role.save()
    return role


@transaction.atomic
def role_update(*, role: Role, **fields) -> Role:
    if "features" in fields:
        fields["features"] = role_validate_features(fields["features"])
    for name, value in fields.items():
        setattr(role, name, value)
    role.full_clean()
    role.save()
    return role


def user_may_manage(*, actor: User, user: User) -> bool:
    """Whether `actor` (who has users_admin) may change `user`, deactivate them or make a token acting as them. Only
    a superuser does that to a superuser: users_admin would otherwise take a superuser's account (set its password,
    or make a token that acts as it) and with it what no role gives."""
    return not user.is_superuser or actor.is_superuser


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str | None,
    email: str = "",
    role: Role | None = None,
    is_superuser: bool = False,
    first_name: str = "",
    last_name: str = "",
) -> User:
    user = User(
        username=username,
        email=email,
        role=role,
        is_superuser=is_superuser,
        is_staff=True,  # every CDP user may log in to the Business Explorer; features decide what they see
        first_name=first_name,
        last_name=last_name,
    )
    if password:
        from django.contrib.auth.password_validation import validate_password

        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    return user


@transaction.atomic
def token_create(*, user: User, name: str = "", expires: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token; returns it with the plain key, which is never stored or shown again."""
    key = secret_generate(TOKEN_PREFIX)
    token = ApiToken.objects.create(
        user=user, name=name, key_prefix=secret_display_prefix(key), key_hash=secret_digest(key), expires=expires
    )
    return token, key


def token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked is None:
        token.revoked = timezone.now()
        token.save(update_fields=["revoked"])
    return token


def token_authenticate(*, key: str) -> ApiToken | None:
    """The live token for a key, or None. Touches last_used at most once per resolution window."""
    token = (
        ApiToken.objects.select_related("user", "user__role")
        .filter(key_hash=secret_digest(key), revoked__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.expires is not None and token.expires <= now:
        return None
    resolution = timedelta(seconds=settings.CDP_TOKEN_LAST_USED_RESOLUTION)
    if token.last_used is None or now - token.last_used >= resolution:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token


# Failed logins per user name within the window: past the limit the name is refused for the rest of the window, so a
# password cannot be guessed at the API's speed (Django checks every guess; nothing counted them).
LOGIN_FAILURES_MAX = 10
LOGIN_FAILURE_WINDOW = timedelta(minutes=15)


class LoginThrottled(Exception):
    """Too many failed logins for a user name: `retry_after` seconds until the window ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed logins for this user name; try again in {retry_after // 60 + 1} minutes.")
        self.retry_after = retry_after


def _login_failures_key(username: str) -> str:
    # Under the rate limiter's prefix (reset with it); a digest: a cache key holds no user name.
    return f"ratelimit:login:{secret_digest(username.strip().lower())}"


# The counts live in the shared cache (Redis). Without it the throttle fails open, as the rate limits do: logging in
# (to the admin, to see what is wrong) matters more during an outage than a few minutes without the throttle.


def login_throttled_for(username: str) -> int:
    """Seconds until `username` may try a password again (0: now): LOGIN_FAILURES_MAX failures in the window."""
    try:
        failures = cache.get(_login_failures_key(username))
    except Exception:  # noqa: BLE001 - any cache failure: not throttled (see above)
        logger.warning("login throttle: cache unavailable; the login is not throttled", exc_info=True)
        return 0
    if failures is None or failures[0] < LOGIN_FAILURES_MAX:
        return 0
    return max(int(failures[1] - time.time()), 1)


def login_failure_record(username: str) -> None:
    key = _login_failures_key(username)
    try:
        count, ends = cache.get(key) or (0, time.time() + LOGIN_FAILURE_WINDOW.total_seconds())
        cache.set(key, (count + 1, ends), timeout=max(int(ends - time.time()), 1))
    except Exception:  # noqa: BLE001
        logger.warning("login throttle: cache unavailable; a failed login is not counted", exc_info=True)


def login_failures_clear(username: str) -> None:
    try:
        cache.delete(_login_failures_key(username))
    except Exception:  # noqa: BLE001
        logger.warning("login throttle: cache unavailable; earlier failed logins are not cleared", exc_info=True)


class ThrottledModelBackend(ModelBackend):
    """Django's user name and password check, with the failed-login throttle in front: the admin's login and the
    API's (user_login) count failures per user name alike, and past the limit the password is not tried."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        name = username if username is not None else kwargs.get(User.USERNAME_FIELD)
        if not isinstance(name, str):
            return super().authenticate(request, username=username, password=password, **kwargs)
        if login_throttled_for(name):
            raise PermissionDenied("too many failed logins")  # authenticate() then answers None at once
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            login_failure_record(name)
        else:
            login_failures_clear(name)
        return user


def user_login(*, username: str, password: str, token_name: str = "login") -> tuple[User, ApiToken, str] | None:  # noqa: S107
    """A new token for the user, or None for a wrong user name or password. Raises LoginThrottled after
    LOGIN_FAILURES_MAX failures for the name in LOGIN_FAILURE_WINDOW (the right password too: it is not tried;
    ThrottledModelBackend counts them, for the admin's login as well)."""
    wait = login_throttled_for(username)
    if wait:
        raise LoginThrottled(wait)
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        return None
    # As the admin's login does (Django's user_logged_in): the Users list shows when someone last signed in, and an
    # account used only through the API read "never".
    update_last_login(None, user)
    # A login's token lasts CDP_LOGIN_TOKEN_TTL_HOURS: a session left behind on some laptop stops working.
    ttl = settings.CDP_LOGIN_TOKEN_TTL_HOURS
    token, key = token_create(
        user=user, name=token_name, expires=timezone.now() + timedelta(hours=ttl) if ttl else None
    )
    return user, token, key


def tokens_purge(*, older_than: timedelta) -> int:
    """Delete tokens revoked or expired more than `older_than` ago; returns how many were deleted.

    Dead tokens are kept for a while so an administrator can still see what a leaked key was; after that they
    are only clutter. Idempotent: a second run finds nothing to delete.
    """
    cutoff = timezone.now() - older_than
    _, deleted = ApiToken.objects.filter(Q(revoked__lt=cutoff) | Q(expires__lt=cutoff)).delete()
    return deleted.get(ApiToken._meta.label, 0)


_USER_FIELDS = {"username", "email", "first_name", "last_name", "role", "is_active"}


@transaction.atomic
def user_update(*, user: User, password: str | None = None, **fields) -> User:
    unknown = set(fields) - _USER_FIELDS
    if unknown:
        raise ValidationError({name: "This field cannot be changed here." for name in unknown})
    was_active = user.is_active
    for name, value in fields.items():
        setattr(user, name, value)
    if password:
        from django.contrib.auth.password_validation import validate_password

        validate_password(password, user)
        user.set_password(password)
    user.full_clean()
    user.save()
    if was_active and not user.is_active:
        # As user_deactivate does: tokens revoked now stay revoked if the user is made active again later.
        ApiToken.objects.filter(user=user, revoked__isnull=True).update(revoked=timezone.now())
    return user


@transaction.atomic
def user_deactivate(*, user: User) -> User:
    """Deactivate a user and revoke their tokens; their history stays attributable."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    ApiToken.objects.filter(user=user, revoked__isnull=True).update(revoked=timezone.now())
    return user
