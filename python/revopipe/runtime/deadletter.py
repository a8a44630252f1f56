"""Where a batch goes when its component cannot take it even after retries: an
append-only JSONL file per component under `data_dir/dead_letter/`, so nothing accepted
is silently lost and an operator can replay it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from revopipe.batch import Batch


class DeadLetter:
    def __init__(self, data_dir: Path, component: str) -> None:
        self.path = data_dir / "dead_letter" / f"{component}.jsonl"

    def write(self, batch: Batch, error: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {"dead_letter_at": time.time(), "batch_id": batch.id, "error": error}
        with self.path.open("a", encoding="utf-8") as f:
            for event in batch.iter_dicts():
                f.write(json.dumps({**header, "event": event}) + "\n")
