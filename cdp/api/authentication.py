"""API token authentication: `Authorization: Token <key>` / `Bearer <key>`, or `X-Access-Token: <key>`."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from cdp.services.auth import token_authenticate


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("token", "bearer")

    def authenticate(self, request):
        key = request.headers.get("X-Access-Token", "").strip()
        if not key:
            header = request.headers.get("Authorization", "")
            parts = header.split()
            if not parts or parts[0].lower() not in self.keywords:
                return None
            if len(parts) != 2:
                raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Token <key>'.")
            key = parts[1]
        token = token_authenticate(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return "Token"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "cdp.api.authentication.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` (also accepted: `Bearer <key>`, or the key in `X-Access-Token`).",
        }
