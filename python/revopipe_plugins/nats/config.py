"""Config models of the `nats` source and sink (keys fixed by the scale-out design)."""

from __future__ import annotations

import re
import socket
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator

from revopipe.config import Duration, SinkConfig, Size, SourceConfig

DEFAULT_URL = "nats://127.0.0.1:4222"
_SCHEMES = ("nats://", "tls://", "ws://", "wss://")
# JetStream names (streams, consumers, buckets) become subject tokens: no dots, spaces
# or wildcards.
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_KV_KEY = re.compile(r"^[-/_=.A-Za-z0-9]+$")


def host_token() -> str:
    """This host's name as one subject token."""
    name = socket.gethostname() or "agent"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def split_subject(subject: str) -> list[str]:
    return subject.split(".")


def subject_valid(subject: str, wildcards: bool) -> bool:
    tokens = split_subject(subject)
    for i, tok in enumerate(tokens):
        if not tok or any(c.isspace() for c in tok):
            return False
        if tok == ">":
            if not wildcards or i != len(tokens) - 1:
                return False
        elif tok == "*":
            if not wildcards:
                return False
        elif "*" in tok or ">" in tok:
            return False
    return True


def covers(pattern: str, subject: str) -> bool:
    """Whether every subject `subject` matches (it may hold wildcards) also matches
    `pattern`: what a stream's subject must do for a publish or a consumer filter."""
    p, s = split_subject(pattern), split_subject(subject)
    for i, ptok in enumerate(p):
        if ptok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        stok = s[i]
        if ptok == "*":
            if stok == ">":
                return False
        elif ptok != stok:
            return False
    return len(s) == len(p)


def covered_by_any(patterns: list[str], subject: str) -> bool:
    return any(covers(p, subject) for p in patterns)


class NatsConnection(BaseModel):
    """The server, credentials and stream: keys the source and the sink share."""

    url: list[str] = Field(
        default=[DEFAULT_URL],
        description="NATS server URL, or a list of URLs of one cluster",
    )
    token: SecretStr | None = Field(default=None, description="authentication token")
    user: SecretStr | None = Field(default=None, description="user name (with password)")
    password: SecretStr | None = Field(default=None, description="password (with user)")
    stream: str = Field(default="REVOPIPE", description="JetStream stream name")
    stream_subjects: list[str] = Field(
        default=["revopipe.>"],
        min_length=1,
        description="subjects of the stream when this component creates it",
    )
    create_stream: bool = Field(
        default=True, description="create the stream at start if it does not exist"
    )
    storage: Literal["file", "memory"] = Field(
        default="file", description="stream storage when created: 'file' or 'memory'"
    )
    duplicate_window: Duration = Field(
        default=120.0,
        gt=0,
        description="how long the stream remembers message ids to drop re-publishes, e.g. '2m'",
    )
    max_age: Duration = Field(
        default=86400.0, ge=0, description="oldest message kept by the stream; 0 = no limit"
    )
    max_bytes: Size = Field(
        default=2**30, ge=0, description="stream size limit, e.g. '1GiB'; 0 = no limit"
    )

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: object) -> object:
        urls = [value] if isinstance(value, str) else value
        if not isinstance(urls, list) or not urls:
            raise ValueError(
                "expected a server URL such as 'nats://127.0.0.1:4222' or a non-empty list of them"
            )
        for u in urls:
            if not isinstance(u, str) or not u.startswith(_SCHEMES):
                raise ValueError(
                    f"expected URLs starting with nats://, tls://, ws:// or wss://, got {u!r}"
                )
        return urls

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid JetStream stream name: use letters, digits, '-' "
                "and '_' (no dots, spaces or wildcards)"
            )
        return value

    @field_validator("stream_subjects")
    @classmethod
    def _stream_subjects(cls, value: list[str]) -> list[str]:
        for s in value:
            if not subject_valid(s, wildcards=True):
                raise ValueError(
                    f"{s!r} is not a valid subject: dot-separated non-empty tokens, '*' for "
                    "one token, '>' only as the last token"
                )
        return value


def _check_auth(
    component: str,
    token: SecretStr | None,
    user: SecretStr | None,
    password: SecretStr | None,
) -> None:
    if token is not None and (user is not None or password is not None):
        raise ValueError(f"nats {component}: give either `token` or `user` + `password`, not both")
    if (user is None) != (password is None):
        raise ValueError(f"nats {component}: `user` and `password` go together; set both")


def _check_subject_in_stream(subject: str, info: ValidationInfo, key: str) -> None:
    subjects = info.data.get("stream_subjects")
    create = info.data.get("create_stream", True)
    if create and subjects and not covered_by_any(subjects, subject):
        raise ValueError(
            f"{key} {subject!r} is not covered by stream_subjects {subjects}; add a "
            f"matching pattern to stream_subjects (e.g. '{subject.split('.')[0]}.>') or "
            f"change {key}"
        )


class NatsSinkConfig(SinkConfig, NatsConnection):
    subject: str = Field(
        default_factory=lambda: f"revopipe.data.{host_token()}",
        description="subject every batch is published on; default 'revopipe.data.<host>' "
        "(the host name with dots as '_'), which the source's default filter "
        "'revopipe.data.>' matches",
    )
    timeout: Duration = Field(
        default=5.0, gt=0, description="how long to wait for the stream's publish ack"
    )
    retry_initial: Duration = Field(
        default=0.1, gt=0, description="first retry delay of a publish, doubled each retry"
    )
    retry_max: Duration = Field(
        default=5.0, gt=0, description="longest delay between publish retries"
    )
    origin: str = Field(
        default="",
        description="prefix of message ids of batches without an origin; default "
        "'<hostname>-<pid>-<random>'",
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str, info: ValidationInfo) -> str:
        if not subject_valid(value, wildcards=False):
            raise ValueError(
                f"{value!r} is not a valid publish subject: dot-separated non-empty tokens "
                "without wildcards, e.g. 'revopipe.data.host1'"
            )
        _check_subject_in_stream(value, info, "subject")
        return value

    @field_validator("batch_max")
    @classmethod
    def _batch_max(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                f"must be 1 for the nats sink (got {value}): each batch is one message whose "
                "id deduplicates it, so batches are never merged; remove batch_max"
            )
        return value

    @model_validator(mode="after")
    def _auth(self) -> NatsSinkConfig:
        _check_auth("sink", self.token, self.user, self.password)
        if self.retry_max < self.retry_initial:
            raise ValueError("nats sink: retry_max must be at least retry_initial; raise retry_max")
        return self


class NatsSourceConfig(SourceConfig, NatsConnection):
    subject: str = Field(
        default="revopipe.data.>",
        description="the consumer's filter subject (wildcards allowed)",
    )
    durable: str = Field(
        default="revopipe",
        description="durable consumer name; every instance with the same name shares the "
        "messages (each goes to one of them)",
    )
    ack_wait: Duration = Field(
        default=30.0,
        ge=1.0,
        description="how long the server waits for an ack before redelivering, e.g. '30s'",
    )
    max_ack_pending: int = Field(
        default=20000, ge=1, description="unacknowledged messages the consumer allows"
    )
    fetch_batch: int = Field(
        default=256, ge=1, le=10000, description="messages asked for per fetch"
    )
    dedup: int = Field(
        default=100000, ge=0, description="acknowledged message ids remembered to skip"
    )
    leader: str = Field(
        default="",
        description="election name: only the elected instance consumes; empty = no election",
    )
    leader_bucket: str = Field(
        default="revopipe_leaders", description="JetStream KV bucket holding the elections"
    )
    leader_ttl: Duration = Field(
        default=5.0,
        ge=1.0,
        description="a dead leader's key expires after this long, e.g. '5s'",
    )
    takeover_delay: Duration | None = Field(
        default=None,
        ge=0,
        description="a new leader holds what it fetches this long, then emits it as one "
        "batch; default ack_wait + 1s",
    )
    instance: str = Field(
        default="", description="this instance's name in elections; default '<hostname>-<pid>'"
    )
    ack_timeout: Duration = Field(
        default=10.0,
        ge=0,
        description="how long stop() waits for the pipeline to accept what was emitted",
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str, info: ValidationInfo) -> str:
        if not subject_valid(value, wildcards=True):
            raise ValueError(
                f"{value!r} is not a valid filter subject: dot-separated non-empty tokens, "
                "'*' for one token, '>' only as the last token, e.g. 'revopipe.data.>'"
            )
        _check_subject_in_stream(value, info, "subject")
        return value

    @field_validator("durable", "leader_bucket")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid JetStream name: use letters, digits, '-' and '_'"
            )
        return value

    @field_validator("leader")
    @classmethod
    def _leader(cls, value: str) -> str:
        if value and (not _KV_KEY.match(value) or value.startswith(".") or value.endswith(".")):
            raise ValueError(
                f"{value!r} is not a valid election name: letters, digits and '-/_=.', not "
                "starting or ending with '.'"
            )
        return value

    @model_validator(mode="after")
    def _auth(self) -> NatsSourceConfig:
        _check_auth("source", self.token, self.user, self.password)
        return self

    @property
    def takeover(self) -> float:
        return self.ack_wait + 1.0 if self.takeover_delay is None else self.takeover_delay
