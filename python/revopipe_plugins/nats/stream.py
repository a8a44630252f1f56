"""Making sure the JetStream stream exists and carries the subjects a component uses."""

from __future__ import annotations

import logging
from typing import Literal, Protocol

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from revopipe_plugins.nats.config import covered_by_any


class StreamSettings(Protocol):
    @property
    def stream(self) -> str: ...
    @property
    def stream_subjects(self) -> list[str]: ...
    @property
    def create_stream(self) -> bool: ...
    @property
    def storage(self) -> Literal["file", "memory"]: ...
    @property
    def duplicate_window(self) -> float: ...
    @property
    def max_age(self) -> float: ...
    @property
    def max_bytes(self) -> int: ...


class StreamError(RuntimeError):
    """The stream is missing or does not carry the component's subject."""


def stream_config(cfg: StreamSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=cfg.stream,
        subjects=list(cfg.stream_subjects),
        storage=api.StorageType.FILE if cfg.storage == "file" else api.StorageType.MEMORY,
        # JetStream refuses a duplicate window longer than max_age.
        duplicate_window=min(cfg.duplicate_window, cfg.max_age)
        if cfg.max_age
        else cfg.duplicate_window,
        max_age=cfg.max_age or None,
        max_bytes=cfg.max_bytes or -1,
    )


async def ensure_stream(
    js: JetStreamContext,
    cfg: StreamSettings,
    subject: str,
    kind: str,
    component: str,
    log: logging.Logger,
) -> api.StreamInfo:
    """The stream's info, creating the stream if it is missing and allowed to."""
    where = f"nats {kind} {component!r}"
    try:
        info = await js.stream_info(cfg.stream)
    except NotFoundError:
        if not cfg.create_stream:
            raise StreamError(
                f"{where}: stream {cfg.stream!r} does not exist and create_stream = false; "
                "create it (e.g. with the `nats` CLI) or set create_stream = true"
            ) from None
        try:
            info = await js.add_stream(stream_config(cfg))
            log.info(
                "%s: created stream %r (subjects %s, %s storage)",
                where,
                cfg.stream,
                cfg.stream_subjects,
                cfg.storage,
            )
        except BadRequestError:
            # Another instance created it at the same moment (with other settings).
            info = await js.stream_info(cfg.stream)
    subjects = list(info.config.subjects or [])
    if not covered_by_any(subjects, subject):
        raise StreamError(
            f"{where}: stream {cfg.stream!r} exists with subjects {subjects}, which do not "
            f"cover subject {subject!r}; change `subject`, use another `stream`, or add the "
            "subject to the stream"
        )
    return info
