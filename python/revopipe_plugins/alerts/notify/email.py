"""The `email` channel: one message per group over SMTP (aiosmtplib), with STARTTLS or
implicit TLS and optional AUTH; plain-text and HTML parts.

SMTP replies decide the outcome: 4xx and connection problems are temporary (retry), 5xx
is permanent (failed), as RFC 5321 defines them."""

from __future__ import annotations

import html
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, ClassVar

import aiosmtplib
from pydantic import Field, SecretStr, field_validator, model_validator

from revopipe.notify import Channel, ChannelConfig, Delivery, Notification
from revopipe_plugins.alerts.notify.slack import group_status
from revopipe_plugins.alerts.notify.webhook import idempotency_key, rfc3339

DEFAULT_SUBJECT = "[{status}:{count}] {alert_names}"
# The fields a subject template may use, with sample values to check it at load time.
_SUBJECT_SAMPLE = {
    "status": "FIRING",
    "count": 1,
    "alert_names": "high_cpu_usage",
    "group_key": "alertname=high_cpu_usage",
    "severity": "warning",
    "summary": "CPU high",
    "channel": "email",
}


class EmailConfig(ChannelConfig):
    host: str = Field(description="SMTP server host name")
    port: int = Field(default=587, gt=0, lt=65536, description="SMTP port (465 for use_tls)")
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS")
    use_tls: bool = Field(default=False, description="implicit TLS from the first byte (465)")
    verify_tls: bool = Field(default=True, description="check the server's certificate")
    ca_file: str = Field(default="", description="extra CA bundle (PEM) to trust")
    username: str = Field(default="", description="AUTH user; empty = no AUTH")
    password: SecretStr = Field(default=SecretStr(""), description="AUTH password")
    from_: str = Field(alias="from", description="sender address, e.g. `alerts@example.com`")
    to: list[str] = Field(min_length=1, description="recipient addresses")
    subject: str = Field(
        default=DEFAULT_SUBJECT,
        description="subject template; fields: " + ", ".join(sorted(_SUBJECT_SAMPLE)),
    )
    send_resolved: bool = Field(default=True, description="also mail resolutions")

    @field_validator("subject")
    @classmethod
    def _subject_formats(cls, value: str) -> str:
        try:
            value.format(**_SUBJECT_SAMPLE)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"subject template {value!r} is invalid ({type(exc).__name__}: {exc}); "
                f"use only the fields {', '.join('{' + k + '}' for k in sorted(_SUBJECT_SAMPLE))}"
            ) from exc
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> EmailConfig:
        if self.use_tls and self.starttls:
            raise ValueError(
                "starttls and use_tls are exclusive: set `starttls = false` with `use_tls = true`"
            )
        return self


def subject_for(batch: Sequence[Notification], config: EmailConfig, channel: str) -> str:
    status = group_status(batch)
    firing = sum(1 for n in batch if n.status == "firing")
    fields: dict[str, Any] = {
        "status": status.upper(),
        "count": firing if status == "firing" else len(batch),
        "alert_names": ", ".join(sorted({n.alert_name for n in batch})),
        "group_key": batch[0].group_key,
        "severity": batch[0].severity,
        "summary": batch[0].summary,
        "channel": channel,
    }
    # Header injection guard: a label value must not start a new header line.
    return " ".join(config.subject.format(**fields).split())


def _text_alert(n: Notification) -> str:
    lines = [f"{n.alert_name} [{n.status}] severity={n.severity or 'none'}"]
    if n.summary:
        lines.append(f"  Summary: {n.summary}")
    if n.description:
        lines.append(f"  Description: {n.description}")
    lines.append(f"  Started: {rfc3339(n.starts_at_ns)}")
    if n.ends_at_ns:
        lines.append(f"  Ended: {rfc3339(n.ends_at_ns)}")
    if n.labels:
        lines.append("  Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items())))
    if n.generator_url:
        lines.append(f"  Source: {n.generator_url}")
    return "\n".join(lines)


def _html_alert(n: Notification) -> str:
    e = html.escape
    rows = [
        f"<h3>{e(n.alert_name)} <small>[{e(n.status)}] {e(n.severity or 'none')}</small></h3>",
        "<ul>",
    ]
    if n.summary:
        rows.append(f"<li><b>Summary:</b> {e(n.summary)}</li>")
    if n.description:
        rows.append(f"<li><b>Description:</b> {e(n.description)}</li>")
    rows.append(f"<li><b>Started:</b> {e(rfc3339(n.starts_at_ns))}</li>")
    if n.ends_at_ns:
        rows.append(f"<li><b>Ended:</b> {e(rfc3339(n.ends_at_ns))}</li>")
    for key, value in sorted(n.labels.items()):
        rows.append(f"<li><code>{e(key)}={e(value)}</code></li>")
    if n.generator_url:
        rows.append(f'<li><a href="{e(n.generator_url, quote=True)}">source</a></li>')
    rows.append("</ul>")
    return "\n".join(rows)


def email_message(batch: Sequence[Notification], config: EmailConfig, channel: str) -> EmailMessage:
    subject = subject_for(batch, config, channel)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = config.from_
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(localtime=False)
    # Same batch, same Message-ID: a resend after a crash can be recognised as a duplicate.
    message["Message-ID"] = f"<{idempotency_key(batch)}@revopipe>"
    message.set_content(subject + "\n\n" + "\n\n".join(_text_alert(n) for n in batch) + "\n")
    message.add_alternative(
        f"<html><body><h2>{html.escape(subject)}</h2>\n"
        + "\n".join(_html_alert(n) for n in batch)
        + "\n</body></html>\n",
        subtype="html",
    )
    return message


class EmailChannel(Channel):
    type_name: ClassVar[str] = "email"
    description: ClassVar[str] = "email over SMTP (STARTTLS/TLS, auth), one message per group"
    Config = EmailConfig
    config: EmailConfig

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.config.starttls or self.config.use_tls):
            return None
        context = ssl.create_default_context(cafile=self.config.ca_file or None)
        if not self.config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def send(self, batch: Sequence[Notification]) -> Delivery:
        cfg = self.config
        if not cfg.send_resolved:
            batch = [n for n in batch if n.status != "resolved"]
        if not batch:
            return Delivery.delivered()
        where = f"channel {self.name!r}: SMTP {cfg.host}:{cfg.port}"
        try:
            context = self._tls_context()
        except (OSError, ssl.SSLError) as exc:
            return Delivery.failed(f"{where}: cannot load ca_file {cfg.ca_file!r}: {exc}")
        try:
            refused, _ = await aiosmtplib.send(
                email_message(batch, cfg, self.name),
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username or None,
                password=cfg.password.get_secret_value() if cfg.username else None,
                use_tls=cfg.use_tls,
                start_tls=cfg.starttls,
                tls_context=context,
                timeout=cfg.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            reason = f"{where}: every recipient refused: " + "; ".join(
                f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients
            )
            if all(400 <= c < 500 for c in codes):
                return Delivery.retry(reason)
            return Delivery.failed(reason + " (fix the `to` addresses)")
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"{where}: {exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                return Delivery.retry(reason)
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                reason += " (check `username`/`password`)"
            return Delivery.failed(reason)
        except aiosmtplib.SMTPException as exc:
            # aiosmtplib reports a missing STARTTLS/AUTH extension with a bare SMTPException
            # (or SMTPNotSupported); the server will not grow one, so retrying cannot help.
            if isinstance(exc, aiosmtplib.SMTPNotSupported) or "not supported" in str(exc):
                return Delivery.failed(
                    f"{where}: {exc} (set `starttls = false` if the server offers no STARTTLS, "
                    "or clear `username` if it offers no AUTH)"
                )
            return Delivery.retry(f"{where}: {type(exc).__name__}: {exc}")
        except (OSError, ssl.SSLError) as exc:
            # Refused/timed-out connections, dropped sessions and TLS handshakes that fail
            # (possibly a server mid-restart) are worth another try.
            return Delivery.retry(f"{where}: {type(exc).__name__}: {exc}")
        if refused:
            # Some recipients took it: resending would duplicate for them, so this counts as
            # delivered and the reason records who missed out.
            return Delivery(
                "delivered",
                f"{where}: refused by "
                + "; ".join(f"{addr}: {r.code} {r.message}" for addr, r in refused.items()),
            )
        return Delivery.delivered()
