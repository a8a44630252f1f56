"""Notification channels: what a notification is, what a channel promises, and how an HTTP
answer maps to a delivery outcome (shared by every HTTP channel so they all treat
429/5xx/Retry-After alike).

This is the interface a plugin implements to add a channel: subclass `Channel`, give it a
`type_name` and a `Config` (a `ChannelConfig` subclass), implement `send`, and return the
class from the ``revopipe_notification_channels`` hook. The alerting plugin's built-in
channels (webhook, slack, pagerduty, email, alertmanager, sms) are written the same way.
"""

from __future__ import annotations

import email.utils
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from revopipe.config import Duration
from revopipe.config.errors import validation_text

if TYPE_CHECKING:
    # Imported where a channel is built: `import revopipe` (every instrumented service)
    # should not pay for an HTTP client it may never use.
    import httpx

NotificationStatus = Literal["firing", "resolved", "acknowledged"]
_STATUSES: tuple[str, ...] = get_args(NotificationStatus)


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert state change to tell a channel about.

    `dedup_key` is stable across retries and restarts so a receiver can drop repeats
    (delivery is at least once). `starts_at_ns`/`ends_at_ns` are Unix nanoseconds; an
    `ends_at_ns` of 0 means "not known yet" (still firing)."""

    dedup_key: str
    status: NotificationStatus
    alert_name: str
    severity: str
    fingerprint: str
    group_key: str
    starts_at_ns: int
    ends_at_ns: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    generator_url: str | None = None

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(
                f"notification {self.dedup_key!r}: status {self.status!r} is not one of "
                f"{', '.join(_STATUSES)}"
            )
        if not self.dedup_key:
            raise ValueError("notification: dedup_key must not be empty")
        # Read-only views so a frozen notification cannot be changed through its dicts.
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    @property
    def summary(self) -> str:
        return self.annotations.get("summary", "")

    @property
    def description(self) -> str:
        return self.annotations.get("description", "")

    def to_json(self) -> str:
        return json.dumps(
            {
                "dedup_key": self.dedup_key,
                "status": self.status,
                "alert_name": self.alert_name,
                "severity": self.severity,
                "fingerprint": self.fingerprint,
                "group_key": self.group_key,
                "starts_at_ns": self.starts_at_ns,
                "ends_at_ns": self.ends_at_ns,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
                "generator_url": self.generator_url,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Notification:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


DeliveryOutcome = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one `Channel.send`: the whole batch was delivered, should be retried
    (no earlier than `retry_after` seconds when the receiver said so), or can never be
    delivered (`reason` says why; the outbox keeps such rows as dead)."""

    outcome: DeliveryOutcome
    reason: str = ""
    retry_after: float | None = None

    @classmethod
    def delivered(cls) -> Delivery:
        return cls("delivered")

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> Delivery:
        return cls("retry", reason, retry_after)

    @classmethod
    def failed(cls, reason: str) -> Delivery:
        return cls("failed", reason)


class ChannelConfig(BaseModel):
    """Keys every channel has; a channel's own model subclasses this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="the channel type, e.g. `webhook`")
    timeout: Duration = Field(default=10.0, gt=0, description="per-request timeout")
    send_resolved: bool = Field(
        default=True,
        description=(
            "also notify when an alert resolves (Alertmanager's per-receiver switch); when "
            "false, resolved notifications are never handed to this channel"
        ),
    )


class Channel(ABC):
    """A way to reach people. Subclasses set `type_name` and `Config` (a `ChannelConfig`
    model) and implement `send`, which must not raise for delivery problems: it returns a
    `Delivery`; an exception is treated by the outbox as a retryable failure."""

    type_name: ClassVar[str]
    Config: ClassVar[type[ChannelConfig]] = ChannelConfig
    description: ClassVar[str] = ""
    """One line for `revopipe plugins`; the class docstring's first line when empty."""

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any] | ChannelConfig,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        if isinstance(config, ChannelConfig):
            self.config = config
        else:
            try:
                self.config = self.Config.model_validate(dict(config))
            except ValidationError as exc:
                raise ValueError(
                    f"channel {name!r} ({self.type_name}): invalid config: {validation_text(exc)}"
                ) from exc
        self._own_client = client is None
        if client is None:
            import httpx

            client = httpx.AsyncClient(timeout=self.config.timeout)
        self.client = client

    def wants(self, notification: Notification) -> bool:
        """Whether `notification` should be handed to this channel at all: False for a
        resolution when `send_resolved` is off. Callers filter with it before enqueueing, so
        `send` need not check the switch (doing so as well is harmless)."""
        return self.config.send_resolved or notification.status != "resolved"

    @abstractmethod
    async def send(self, batch: Sequence[Notification]) -> Delivery:
        """Deliver `batch` (notifications of one group, oldest first) as one message."""

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110: delta-seconds or an HTTP-date);
    None when absent or unreadable, never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    # isascii: str.isdigit also accepts characters like '²' that int() refuses.
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def delivery_from_response(channel: str, response: httpx.Response) -> Delivery:
    """2xx delivered; 408, 429 and 5xx retried (honouring Retry-After); any other status is
    a permanent failure because repeating the same request cannot fix it."""
    status = response.status_code
    if 200 <= status < 300:
        return Delivery.delivered()
    body = response.text[:200].strip()
    reason = f"channel {channel!r}: HTTP {status} from {response.request.url}"
    if body:
        reason += f": {body}"
    if status in (408, 429) or status >= 500:
        return Delivery.retry(reason, parse_retry_after(response.headers.get("retry-after")))
    return Delivery.failed(reason + " (fix the channel's url/credentials or the payload)")
