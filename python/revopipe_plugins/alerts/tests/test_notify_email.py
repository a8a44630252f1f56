"""The email channel against a real SMTP server (aiosmtpd) on loopback: subject, plain-text
and HTML bodies and recipients as received; STARTTLS with a certificate generated here and
AUTH checked by the server; 4xx answers and a server that is down retried, 5xx failed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from revopipe_plugins.alerts.notify import EmailChannel, Notification
from revopipe_plugins.alerts.notify.email import EmailConfig

x509 = pytest.importorskip("cryptography.x509")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Inbox:
    """An aiosmtpd handler that keeps what it accepted, or answers `data_reply`/`rcpt_reply`."""

    def __init__(self, data_reply: str = "250 OK", rcpt_reply: str = "250 OK") -> None:
        self.data_reply = data_reply
        self.rcpt_reply = rcpt_reply
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.tls: list[bool] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_reply.startswith("250") or "good" in address:
            envelope.rcpt_tos.append(address)
            return "250 OK"
        return self.rcpt_reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply.startswith("250"):
            raw = envelope.original_content or b""
            msg = message_from_bytes(raw, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append((envelope.mail_from or "", list(envelope.rcpt_tos), msg))
            self.tls.append(session.ssl is not None)
        return self.data_reply


@contextmanager
def smtp_server(handler: Inbox, **kwargs: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def note(fp: str, status: str = "firing", **kw: Any) -> Notification:
    return Notification(
        dedup_key=f"{fp}:{status}",
        status=status,  # type: ignore[arg-type]
        alert_name=kw.pop("alert_name", "high_cpu_usage"),
        severity="warning",
        fingerprint=fp,
        group_key="alertname=high_cpu_usage",
        starts_at_ns=1_700_000_000_000_000_000,
        ends_at_ns=kw.pop("ends_at_ns", 0),
        labels={"instance": fp},
        annotations={"summary": "CPU <above> 80 %", "description": f"{fp} is busy"},
        generator_url="http://revopipe.local/rules/high_cpu_usage",
    )


def config(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "from": "alerts@revopipe.test",
        "to": ["ops@example.test", "oncall@example.test"],
        "timeout": "5s",
        **extra,
    }


@pytest.mark.anyio
async def test_message_received_with_subject_bodies_and_recipients():
    inbox = Inbox()
    with smtp_server(inbox) as port:
        channel = EmailChannel("mail", config(port))
        result = await channel.send([note("web-1"), note("web-2"), note("web-3", "resolved")])
        await channel.aclose()
    assert result.outcome == "delivered", result.reason
    ((sender, rcpts, msg),) = inbox.messages
    assert sender == "alerts@revopipe.test"
    assert rcpts == ["ops@example.test", "oncall@example.test"]
    assert msg["Subject"] == "[FIRING:2] high_cpu_usage"
    assert msg["From"] == "alerts@revopipe.test"
    assert msg["To"] == "ops@example.test, oncall@example.test"
    assert msg["Message-ID"].endswith("@revopipe>")
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain is not None and rich is not None
    text = plain.get_content()
    assert "high_cpu_usage [firing] severity=warning" in text
    assert "Summary: CPU <above> 80 %" in text
    assert "Description: web-2 is busy" in text
    assert "Labels: instance=web-3" in text
    assert "high_cpu_usage [resolved]" in text
    page = rich.get_content()
    assert "CPU &lt;above&gt; 80 %" in page  # escaped, never raw markup from labels
    assert '<a href="http://revopipe.local/rules/high_cpu_usage">' in page


@pytest.mark.anyio
async def test_subject_template_and_resolved_group():
    inbox = Inbox()
    with smtp_server(inbox) as port:
        channel = EmailChannel(
            "mail", config(port, subject="{status} {alert_names} ({count}) via {channel}")
        )
        await channel.send([note("a", "resolved"), note("b", "resolved", alert_name="disk")])
        await channel.aclose()
    assert inbox.messages[0][2]["Subject"] == "RESOLVED disk, high_cpu_usage (2) via mail"


@pytest.mark.anyio
async def test_starttls_with_auth(tmp_path):
    cert_file, key_file = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    logins: list[tuple[str, bool]] = []

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"bot",
            b"hunter2",
        )
        logins.append((mechanism, ok))
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False)

    inbox = Inbox()
    with smtp_server(
        inbox,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ) as port:
        tls = {"starttls": True, "ca_file": str(cert_file), "username": "bot"}
        good = EmailChannel("mail", config(port, **tls, password="hunter2"))
        assert (await good.send([note("a")])).outcome == "delivered"
        bad = EmailChannel("mail", config(port, **tls, password="wrong"))
        refused = await bad.send([note("a")])
        # A certificate nobody vouches for is refused unless verify_tls is turned off.
        plain_auth = {"starttls": True, "username": "bot", "password": "hunter2"}
        untrusted = EmailChannel("mail", config(port, **plain_auth))
        unverified = await untrusted.send([note("a")])
        trusting = EmailChannel("mail", config(port, **plain_auth, verify_tls=False))
        assert (await trusting.send([note("b")])).outcome == "delivered"
        for channel in (good, bad, untrusted, trusting):
            await channel.aclose()
    assert inbox.tls == [True, True]
    assert logins[0][1] is True and logins[1][1] is False
    assert refused.outcome == "failed"
    assert "535" in refused.reason and "password" in refused.reason
    assert "hunter2" not in refused.reason and "wrong" not in refused.reason
    assert unverified.outcome == "retry"
    assert "CERTIFICATE_VERIFY_FAILED" in unverified.reason or "certificate" in unverified.reason
    assert len(inbox.messages) == 2


@pytest.mark.anyio
async def test_starttls_required_by_us_but_not_offered_fails_clearly():
    with smtp_server(Inbox()) as port:
        channel = EmailChannel("mail", config(port, starttls=True))
        result = await channel.send([note("a")])
        await channel.aclose()
    assert result.outcome == "failed"
    assert "starttls = false" in result.reason


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("inbox", "outcome", "code"),
    [
        (Inbox(data_reply="451 4.3.0 try again later"), "retry", "451"),
        (Inbox(data_reply="554 5.7.1 rejected as spam"), "failed", "554"),
        (Inbox(rcpt_reply="450 4.2.0 mailbox busy"), "retry", "450"),
        (Inbox(rcpt_reply="550 5.1.1 no such user"), "failed", "550"),
    ],
)
async def test_smtp_replies_map_to_delivery(inbox, outcome, code):
    with smtp_server(inbox) as port:
        channel = EmailChannel("mail", config(port))
        result = await channel.send([note("a")])
        await channel.aclose()
    assert result.outcome == outcome
    assert code in result.reason and "'mail'" in result.reason
    assert inbox.messages == []


@pytest.mark.anyio
async def test_partly_refused_recipients_count_as_delivered():
    inbox = Inbox(rcpt_reply="550 5.1.1 no such user")
    with smtp_server(inbox) as port:
        channel = EmailChannel("mail", config(port, to=["good@example.test", "bad@example.test"]))
        result = await channel.send([note("a")])
        await channel.aclose()
    assert result.outcome == "delivered"
    assert "bad@example.test" in result.reason
    assert inbox.messages[0][1] == ["good@example.test"]


@pytest.mark.anyio
async def test_server_down_is_retried():
    channel = EmailChannel("mail", config(free_port()))
    result = await channel.send([note("a")])
    await channel.aclose()
    assert result.outcome == "retry"
    assert "127.0.0.1" in result.reason


def test_bad_configs_are_explained():
    with pytest.raises(ValueError, match=r"channel 'm' \(email\).*to"):
        EmailChannel("m", config(25, to=[]))
    with pytest.raises(ValueError, match=r"subject.*fields"):
        EmailChannel("m", config(25, subject="{nope}"))
    with pytest.raises(ValueError, match="exclusive"):
        EmailChannel("m", config(25, starttls=True, use_tls=True))
    parsed = EmailChannel("m", config(25, password="s3cret")).config
    assert isinstance(parsed, EmailConfig)
    assert "s3cret" not in repr(parsed)
    assert parsed.from_ == "alerts@revopipe.test"


def test_subject_cannot_inject_headers():
    cfg = EmailConfig.model_validate(config(25, subject="{summary}"))
    evil = Notification(
        dedup_key="k",
        status="firing",
        alert_name="x",
        severity="",
        fingerprint="f",
        group_key="g",
        starts_at_ns=1,
        annotations={"summary": "hi\r\nBcc: victim@example.test"},
    )
    from revopipe_plugins.alerts.notify.email import subject_for

    assert "\n" not in subject_for([evil], cfg, "m")
