"""A binary append-only file that rotates by size: path → path.1 → … → path.N."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


class RotatingFile:
    def __init__(self, path: Path, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO = path.open("ab")
        self._size = self._f.tell()

    def write(self, data: bytes) -> None:
        # A batch is never split across files: a reader of one file sees whole batches.
        if self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
        self._f.write(data)
        self._size += len(data)

    def rotate(self) -> None:
        self._f.close()
        if self.max_files == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.max_files - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._f = self.path.open("ab")
        self._size = 0

    def flush(self, fsync: bool) -> None:
        self._f.flush()
        if fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
