"""SMTP through Django's SMTP backend, one connection reused for a whole campaign."""

from __future__ import annotations

import contextlib
import smtplib

from django.core.mail.backends.smtp import EmailBackend

from emails.providers.base import ChannelNotConfigured, EmailProvider, OutgoingEmail, ProviderError, register

TIMEOUT_SECONDS = 20


@register
class SmtpProvider(EmailProvider):
    kind = "smtp"

    def __init__(self, channel, secret):
        super().__init__(channel, secret)
        if not channel.smtp_host:
            raise ChannelNotConfigured("the email channel has no SMTP host configured")
        self.backend = EmailBackend(
            host=channel.smtp_host,
            port=channel.smtp_port,
            username=channel.smtp_username or None,
            password=secret or None,
            use_tls=channel.smtp_security == "starttls",
            use_ssl=channel.smtp_security == "ssl",
            timeout=TIMEOUT_SECONDS,
            fail_silently=False,
        )

    def send(self, message: OutgoingEmail) -> str:
        mail = self.django_message(message, self.backend)
        message_id = mail.message()["Message-ID"]
        mail.extra_headers["Message-ID"] = message_id
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            # (exc.recipients maps each address to the server's answer, which repeats it: codes only, no address
            # in a message that is logged)
            codes = sorted({str(code) for code, _ in exc.recipients.values()})
            raise ProviderError(f"recipient refused: SMTP {', '.join(codes)}", permanent=True) from None
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise ProviderError(f"SMTP authentication failed: {exc.smtp_code}", permanent=True, channel=True) from None
        except smtplib.SMTPSenderRefused as exc:
            self.close()
            raise ProviderError(f"the SMTP server refused the sender {exc.sender}: {exc.smtp_code}",
                                permanent=True, channel=True) from None  # fmt: skip
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise ProviderError(f"SMTP error {exc.smtp_code}", permanent=exc.smtp_code >= 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise ProviderError(f"SMTP server unreachable: {exc}", permanent=False) from None
        return message_id

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection
            self.backend.close()
        self.backend.connection = None
