from django.apps import AppConfig


class EmailsConfig(AppConfig):
    name = "emails"
    verbose_name = "Email channel"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cdp import hooks
        from cdp.services.data_sources import data_source_reserve
        from emails.services.erasure import identifiers_erased
        from emails.services.feedback import feedback_apply_received
        from emails.services.setup import SOURCE_SLUG

        # A GDPR erase first applies the webhook payloads received until then, and removes the channel's data of
        # the addresses it deletes.
        hooks.on_erase_preparing(feedback_apply_received)
        hooks.on_identifiers_erased(identifiers_erased)
        # The channel's events are its consent and block records, kept in step with EmailAddress: one an API client
        # wrote (a "subscription_confirmed") would set the email_consent attribute segments and exports use.
        data_source_reserve(
            slug=SOURCE_SLUG,
            reason=f"the data source {SOURCE_SLUG!r} holds the email channel's consent and block records; it takes "
            "no events from clients: use /emails/subscribe, /emails/unsubscribe, /api/emails/block or the imports",
        )
