from django.apps import AppConfig


class EmailsConfig(AppConfig):
    name = "emails"
    verbose_name = "Email channel"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from cdp import hooks
        from emails.services.erasure import identifiers_erased
        from emails.services.feedback import feedback_apply_received

        # A GDPR erase first applies the webhook payloads received until then, and removes the channel's data of
        # the addresses it deletes.
        hooks.on_erase_preparing(feedback_apply_received)
        hooks.on_identifiers_erased(identifiers_erased)
