"""`revopipe top`: a live terminal view of a running pipeline, read from its control API
(`revopipe.runtime.api`).

- `client`: finds the running instance (`--url`, or `<data_dir>/api.json` named by a
  config file) and polls it.
- `rates`: two polls -> one `Frame` of per-component rates and totals.
- `view`: a `Frame` -> rich renderables (and JSON for `--json`).
- `app`: the loop behind the command: `--once`, the live screen, `--json` lines.
"""

from revopipe.top.app import run_top
from revopipe.top.client import ApiClient, Sample, Target, TopError, locate
from revopipe.top.rates import Frame, Row, Totals, build_frame
from revopipe.top.view import frame_to_json, render

__all__ = [
    "ApiClient",
    "Frame",
    "Row",
    "Sample",
    "Target",
    "TopError",
    "Totals",
    "build_frame",
    "frame_to_json",
    "locate",
    "render",
    "run_top",
]
