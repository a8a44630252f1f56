"""Keeping secrets out of everything revopipe prints."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|credential|auth)", re.I)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


class Redactor:
    """Replaces known secret values (those interpolated from the environment, and those
    under secret-looking keys) in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Very short values would mask ordinary words; they are still masked by key.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted(
            {*self._secrets, *(s for s in secrets if len(s) >= 4)}, key=len, reverse=True
        )

    def text(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return text

    def mapping(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a config table fit for printing."""
        out: dict[str, Any] = {}
        for k, v in data.items():
            if is_secret_key(k) and isinstance(v, str | bytes):
                out[k] = MASK
            elif isinstance(v, Mapping):
                out[k] = self.mapping(v)
            elif isinstance(v, list):
                out[k] = [
                    self.mapping(x)
                    if isinstance(x, Mapping)
                    else self.text(x)
                    if isinstance(x, str)
                    else x
                    for x in v
                ]
            elif isinstance(v, str):
                out[k] = self.text(v)
            else:
                out[k] = v
        return out


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record that passes a handler."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redactor.text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
