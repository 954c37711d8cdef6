"""REST API of the email channel: "Channels", "Email Templates", "Emails", "Email Blocking/Unblocking",
"Email Activations" (campaigns). Thin: selectors for reads, services for writes."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from cdp.api.errors import error_body
from cdp.api.views import CdpViewSet
from cdp.features import Feature
from emails import selectors
from emails.api import serializers as s
from emails.models import Campaign, EmailAddress
from emails.providers import ChannelNotConfigured, OutgoingEmail, ProviderError
from emails.services import campaigns as campaign_services
from emails.services import templates as template_services
from emails.services.channel import channel_get, channel_update, webhook_secret_rotate
from emails.services.sending import RecipientBlocked, email_send
from emails.services.state import EmailInvalid, address_state, email_block, email_normalize, email_unblock

BLOCKING_TAG = "Email Blocking/Unblocking"


def suppression_list_response() -> StreamingHttpResponse:
    """The suppression list CSV download (the API and the admin's button)."""
    response = StreamingHttpResponse(selectors.suppression_list_csv(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="suppression-list.csv"'
    return response


@extend_schema(tags=["Channels"])
class EmailChannelViewSet(CdpViewSet):
    """The email channel configuration (one per installation)."""

    serializer_class = s.ChannelSerializer
    read_feature = Feature.EMAILS_VIEW
    write_feature = Feature.SETTINGS_EDIT
    pagination_class = None

    @extend_schema(responses={200: s.ChannelSerializer})
    def retrieve(self, request):
        return Response(s.ChannelSerializer(channel_get(), context={"request": request}).data)

    @extend_schema(request=s.ChannelSerializer, responses={200: s.ChannelSerializer})
    def partial_update(self, request):
        serializer = s.ChannelSerializer(channel_get(), data=request.data, partial=True, context={"request": request})
        serializer.is_valid(raise_exception=True)
        channel = channel_update(user=request.user, **serializer.validated_data)
        return Response(s.ChannelSerializer(channel, context={"request": request}).data)

    @extend_schema(request=None, responses={200: s.WebhookSecretSerializer})
    def rotate_webhook_secret(self, request):
        """A new webhook secret for /emails/feedback, shown this once; the old one stops working."""
        return Response({"webhook_secret": webhook_secret_rotate()})

    @extend_schema(
        request=s.TestEmailSerializer,
        responses={
            200: s.SendResultSerializer,
            409: OpenApiResponse(
                description="The email channel is not set up to send (no sender address, SMTP host or API key, "
                "credentials that no longer decrypt: `message` says which), or a request with this Idempotency-Key "
                "is still running."
            ),
            502: OpenApiResponse(description="The provider refused it or could not be reached: `message` says why."),
        },
    )
    def send_test(self, request):
        """Send a test email through the configured provider (blocked addresses are refused like any send: a 400)."""
        data = s.TestEmailSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            provider_id = email_send(
                message=OutgoingEmail(
                    to=data.validated_data["to"],
                    subject="Test email from the CDP",
                    text="The email channel is configured correctly.",
                )  # fmt: skip
            )
        except RecipientBlocked as exc:
            # Refused before the provider was asked: the address given is the problem, not a gateway.
            raise ValidationError({"to": str(exc)}) from None
        except ChannelNotConfigured as exc:
            # Our own settings, not a gateway: no provider was asked (a 5xx would read as an outage to retry).
            return Response(error_body(str(exc)), status=status.HTTP_409_CONFLICT)
        except ProviderError as exc:
            return Response(error_body(str(exc)), status=status.HTTP_502_BAD_GATEWAY)
        return Response({"status": "ok", "message": "Test email sent", "provider_message_id": provider_id})


@extend_schema_view(
    list=extend_schema(tags=["Email Templates"]), retrieve=extend_schema(tags=["Email Templates"]),
    create=extend_schema(tags=["Email Templates"]), update=extend_schema(tags=["Email Templates"]),
    partial_update=extend_schema(tags=["Email Templates"]), destroy=extend_schema(tags=["Email Templates"]),
)  # fmt: skip
class EmailTemplateViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                           mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    serializer_class = s.EmailTemplateSerializer
    delete_refusal = "Campaigns used the template: it is kept with them."
    read_feature = Feature.EMAILS_VIEW
    write_feature = Feature.EMAILS_SEND

    def get_queryset(self):
        return selectors.templates_list()

    def perform_create(self, serializer):
        serializer.instance = template_services.template_create(user=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = template_services.template_update(
            template=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        template_services.template_delete(template=instance)

    @extend_schema(tags=["Email Templates"], request=s.PreviewRequestSerializer, responses={200: s.PreviewSerializer})
    @action(detail=True, methods=["post"], url_path="preview")
    def preview(self, request, pk=None):
        """The template rendered with sample campaign values (and the placeholders it uses we do not fill)."""
        data = s.PreviewRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        preview = template_services.template_preview(template=self.get_object(), **data.validated_data)
        return Response(s.PreviewSerializer(preview).data)


def _address_or_404(email: str) -> EmailAddress:
    try:
        normalized = email_normalize(email)
    except EmailInvalid:
        raise ValidationError({"email": "Email address is invalid"}) from None
    address = EmailAddress.objects.filter(email=normalized).first()
    if address is None:
        raise NotFound(
            f"{normalized} is not a known address: no subscription, import, block or provider event recorded its state."
        )
    return address


@extend_schema(tags=["Emails"])
class EmailAddressViewSet(CdpViewSet, mixins.ListModelMixin):
    """Consent and block state per address, and the events that led to it."""

    serializer_class = s.EmailAddressSerializer
    read_feature = Feature.EMAILS_VIEW
    write_feature = Feature.EMAILS_BLOCK
    lookup_field = "email"
    lookup_value_regex = r"[^/]+"

    def get_queryset(self):
        params = self.request.query_params
        blocked = params.get("blocked")
        if blocked not in (None, "", "true", "false"):
            raise ValidationError({"blocked": "must be true or false"})
        consent = params.get("consent") or None
        if consent not in (None, "true", "false", "unknown"):
            raise ValidationError({"consent": "must be true, false or unknown"})
        return selectors.addresses_list(
            blocked=None if blocked in (None, "") else blocked == "true", consent=consent, q=params.get("q", "")[:254]
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("blocked", str, enum=["true", "false"]),
            OpenApiParameter("consent", str, enum=["true", "false", "unknown"]),
            OpenApiParameter("q", str, description="Part of the address."),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, methods=["get"], url_path="suppression_list", pagination_class=None, filter_backends=[])
    def suppression_list(self, request):
        """The addresses no campaign mails (blocked or unsubscribed) as a CSV file `email,reason`, streamed: the
        block list import's columns, so it loads as a block list here or into another sender."""
        return suppression_list_response()

    @extend_schema(
        responses={
            200: s.EmailAddressDetailSerializer,
            400: OpenApiResponse(description="Not an email address: `Email address is invalid`."),
        }
    )
    def retrieve(self, request, email=None):
        return Response(s.EmailAddressDetailSerializer(_address_or_404(email)).data)

    def _block_action(self, request, *, block: bool) -> Response:
        data = s.BlockSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            email = email_normalize(data.validated_data["email"])
        except EmailInvalid:
            raise ValidationError({"email": "Email address is invalid"}) from None
        change = email_block if block else email_unblock
        changed = change(email=email, reason=data.validated_data["reason"], user=request.user)
        verb = "blocked" if block else "unblocked"
        message = f"{email} {verb}" if changed else f"{email} was already {verb if block else 'not blocked'}"
        state = address_state(email) or EmailAddress(email=email)
        return Response({"status": "ok", "message": message, "email": s.EmailAddressSerializer(state).data})

    @extend_schema(
        tags=["Email Blocking/Unblocking"], request=s.BlockSerializer, responses={200: s.BlockResultSerializer}
    )
    @action(detail=False, methods=["post"], url_path="block")
    def block(self, request):
        """Block an address (Email Address Blocked, with the reason and the acting user): it gets no more mail."""
        return self._block_action(request, block=True)

    @extend_schema(
        tags=["Email Blocking/Unblocking"], request=s.BlockSerializer, responses={200: s.BlockResultSerializer}
    )
    @action(detail=False, methods=["post"], url_path="unblock")
    def unblock(self, request):
        """Unblock an address (Email Address Unblocked, with the reason and the acting user)."""
        return self._block_action(request, block=False)


@extend_schema_view(
    list=extend_schema(tags=["Email Activations"]), retrieve=extend_schema(tags=["Email Activations"]),
    # The segment is looked up under its ACL: one the user may not see is answered as one that does not exist.
    create=extend_schema(tags=["Email Activations"], responses={
        201: s.CampaignSerializer,
        404: OpenApiResponse(description="No segment `segment_id` you may see, or it is in the trash."),
    }),
)  # fmt: skip
class CampaignViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Send a template to a segment. Creating one starts it (a background job); progress is in the counters."""

    serializer_class = s.CampaignSerializer
    read_feature = Feature.EMAILS_VIEW
    write_feature = Feature.EMAILS_SEND

    def get_queryset(self):
        from segments.selectors import segments_visible

        # The segment ACL: a campaign is visible with its segment.
        visible = segments_visible(user=self.request.user, trashed=None).values("pk")
        return selectors.campaigns_list().filter(segment_id__in=visible)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = campaign_services.campaign_create(
            name=data["name"], template=data["template"], segment_id=data["segment_id"], user=self.request.user
        )

    @extend_schema(
        tags=["Email Activations"],
        request=None,
        responses={200: s.CampaignSerializer, 400: OpenApiResponse(description="The campaign cannot be paused now.")},
    )
    @action(detail=True, methods=["post"], url_path="pause")
    def pause(self, request, pk=None):
        """Stop sending: the run stops before its next send; the recipients not mailed yet wait for `resume`.
        400 when the campaign is not queued, preparing or sending."""
        campaign = campaign_services.campaign_pause(campaign=self.get_object())
        return Response(s.CampaignSerializer(campaign, context=self.get_serializer_context()).data)

    @extend_schema(
        tags=["Email Activations"],
        request=None,
        responses={200: s.CampaignSerializer, 400: OpenApiResponse(description="The campaign is not paused.")},
    )
    @action(detail=True, methods=["post"], url_path="resume")
    def resume(self, request, pk=None):
        """Go on sending a paused campaign to the recipients it had not mailed yet. 400 when it is not paused."""
        campaign = campaign_services.campaign_resume(campaign=self.get_object())
        return Response(s.CampaignSerializer(campaign, context=self.get_serializer_context()).data)

    @extend_schema(tags=["Email Activations"], responses={200: s.CampaignReportSerializer})
    @action(detail=True, methods=["get"], url_path="report")
    def report(self, request, pk=None):
        """Sent, failed, pending, and skipped by reason (blocked, unsubscribed, no_consent)."""
        return Response(campaign_services.campaign_report(campaign=self.get_object()))

    @extend_schema(
        tags=["Email Exports"],
        parameters=[OpenApiParameter("status", str, enum=["pending", "sending", "sent", "skipped", "failed"])],
        responses={200: s.CampaignRecipientSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], url_path="recipients")
    def recipients(self, request, pk=None):
        """Per-recipient status of the campaign (paginated)."""
        campaign: Campaign = self.get_object()
        wanted = request.query_params.get("status") or None
        qs = selectors.campaign_recipients(campaign=campaign, status=wanted)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.CampaignRecipientSerializer(page, many=True).data)
