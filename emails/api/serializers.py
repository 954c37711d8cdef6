from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from cdp.api.fields import IdRelatedField
from emails.models import Campaign, CampaignRecipient, EmailAddress, EmailChannel, EmailTemplate
from emails.services.channel import EDITABLE_FIELDS


class ChannelSerializer(serializers.ModelSerializer):
    """The channel. `credentials` (SMTP password / API key) is write-only; only a hint is ever shown back."""

    credentials = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=1000, trim_whitespace=True,
        help_text="SMTP password or provider API key; stored encrypted, never returned. Empty string clears it.",
    )  # fmt: skip
    credentials_set = serializers.SerializerMethodField()
    webhook_secret_set = serializers.SerializerMethodField()
    feedback_urls = serializers.SerializerMethodField()

    class Meta:
        model = EmailChannel
        fields = [*EDITABLE_FIELDS, "credentials", "credentials_set", "credentials_hint", "webhook_secret_set",
                  "webhook_secret_prefix", "feedback_urls", "modified"]  # fmt: skip
        read_only_fields = ["credentials_hint", "webhook_secret_prefix", "modified"]

    def get_credentials_set(self, obj: EmailChannel) -> bool:
        return bool(obj.credentials_encrypted)

    def get_webhook_secret_set(self, obj: EmailChannel) -> bool:
        return bool(obj.webhook_secret_hash)

    def get_feedback_urls(self, obj: EmailChannel) -> dict[str, str]:
        request = self.context.get("request")
        base = obj.public_base_url.rstrip("/") if obj.public_base_url else ""
        if not base and request is not None:
            base = request.build_absolute_uri("/").rstrip("/")
        return {
            "configured": base + reverse("emails:feedback"),
            "brevo": base + reverse("emails:feedback-provider", args=["brevo"]),
            "infobip": base + reverse("emails:feedback-provider", args=["infobip"]),
        }


class WebhookSecretSerializer(serializers.Serializer):
    webhook_secret = serializers.CharField(help_text="Shown once: configure it in the provider's webhook.")


class TestEmailSerializer(serializers.Serializer):
    to = serializers.EmailField()


class SendResultSerializer(serializers.Serializer):
    status = serializers.CharField()
    message = serializers.CharField()
    provider_message_id = serializers.CharField(required=False)


class EmailTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = EmailTemplate
        fields = ["id", "name", "subject", "html_body", "text_body", "created", "modified"]
        read_only_fields = ["id", "created", "modified"]


class PreviewRequestSerializer(serializers.Serializer):
    email = serializers.EmailField(required=False, help_text="Sample recipient (default jane.doe@example.com).")


class PreviewSerializer(serializers.Serializer):
    subject = serializers.CharField()
    html = serializers.CharField(allow_blank=True)
    text = serializers.CharField(allow_blank=True)
    unknown_placeholders = serializers.ListField(child=serializers.CharField())


class EmailAddressSerializer(serializers.ModelSerializer):
    class Meta:
        model = EmailAddress
        fields = ["email", "consent", "consent_changed", "consent_source", "blocked", "blocked_reason", "blocked_by",
                  "blocked_at", "soft_bounces_in_row", "opt_in_sent_at", "created", "modified"]  # fmt: skip
        read_only_fields = fields


class EmailEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    event_time = serializers.DateTimeField()
    payload = serializers.JSONField()
    customer_entity_id = serializers.CharField(allow_null=True)


class EmailAddressDetailSerializer(EmailAddressSerializer):
    events = serializers.SerializerMethodField()

    class Meta(EmailAddressSerializer.Meta):
        fields = [*EmailAddressSerializer.Meta.fields, "events"]
        read_only_fields = fields

    def get_events(self, obj: EmailAddress) -> list[dict]:
        from emails.selectors import address_events

        return EmailEventSerializer(address_events(email=obj.email), many=True).data


class BlockSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    reason = serializers.CharField(max_length=2000, help_text="Why (required).")


class BlockResultSerializer(serializers.Serializer):
    status = serializers.CharField()
    message = serializers.CharField()
    email = EmailAddressSerializer()


class CampaignSerializer(serializers.ModelSerializer):
    serializer_related_field = IdRelatedField  # `template`: 1.5 is refused, not read as template 1
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = Campaign
        fields = ["id", "name", "template", "segment_id", "status", "total", "sent", "skipped", "failed", "percent",
                  "message", "created", "started", "finished"]  # fmt: skip
        read_only_fields = ["id", "status", "total", "sent", "skipped", "failed", "percent", "message", "created",
                            "started", "finished"]  # fmt: skip
        extra_kwargs = {"segment_id": {"required": True, "allow_null": False}}


class CampaignReportSerializer(serializers.Serializer):
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.DictField(child=serializers.IntegerField(), help_text="Skipped recipients by reason.")
    pending = serializers.IntegerField()


class CampaignRecipientSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignRecipient
        fields = ["id", "email", "customer_entity_id", "status", "reason", "message_id", "provider_message_id",
                  "attempts", "sent_at"]  # fmt: skip
        read_only_fields = fields
