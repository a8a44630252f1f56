"""The `dashboard` sink: folds batches into an in-memory model and serves a live web page
and a JSON API over it (see README.md and docs/dashboard.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, model_validator

from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe.config import Duration, SinkConfig
from revopipe.config.address import Address, is_loopback, parse_address
from revopipe.config.errors import did_you_mean, validation_text
from revopipe.events import Event, Health
from revopipe.health import HealthEntry, component_entries, overall
from revopipe.plugins import PluginError, Registry, default_registry
from revopipe.runtime.stats import ComponentStats
from revopipe.tuning import Tunable
from revopipe.widgets import SeriesView, Widget, WidgetConfig
from revopipe_plugins.dashboard.security import Security
from revopipe_plugins.dashboard.server import DashboardServer
from revopipe_plugins.dashboard.state import DashboardState

MIN_TOKEN = 16

DEFAULT_LAYOUT: tuple[dict[str, Any], ...] = (
    {"type": "system", "x": 0, "y": 0, "w": 4, "h": 3},
    {"type": "health", "x": 4, "y": 0, "w": 4, "h": 3},
    {"type": "alerts", "x": 8, "y": 0, "w": 4, "h": 3},
    {"type": "api", "x": 0, "y": 3, "w": 8, "h": 4},
    {"type": "errors", "x": 8, "y": 3, "w": 4, "h": 4},
    {"type": "trends", "x": 0, "y": 7, "w": 8, "h": 4},
    {"type": "recommendations", "x": 8, "y": 7, "w": 4, "h": 4},
)


class DashboardConfig(SinkConfig):
    listen: Address = Field(
        default="127.0.0.1:8050",
        description="'host:port' to serve on; anything but loopback needs `token`",
    )
    token: SecretStr | None = Field(
        default=None,
        description="required unless `listen` is loopback: the page and API then need it "
        "(use ${ENV_VAR})",
    )
    title: str = Field(default="revopipe", description="the page's heading")
    refresh: Duration = Field(
        default=1.0, gt=0, description="no widget is pushed to a tab more often than this"
    )
    history: str | None = Field(
        default=None, description="name of a `sqlite` sink whose history the trends widget reads"
    )
    alerts: str | None = Field(
        default=None,
        description="name of the `alerts` processor to show and act on (default: the only one)",
    )
    optimizer: str | None = Field(
        default=None,
        description="name of the `optimizer` processor to show (default: the only one)",
    )
    max_series: int = Field(
        default=2000, ge=1, le=1_000_000, description="series held in memory at most"
    )
    points: int = Field(
        default=300, ge=2, le=100_000, description="recent points held per series (sparklines)"
    )
    widgets: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(w) for w in DEFAULT_LAYOUT],
        description="[[sinks.<name>.widgets]] entries: type, id, title, x, y, w, h, refresh, "
        "series, tags (default: the seven built-in widgets)",
    )

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> DashboardConfig:
        problems = []
        host, _ = parse_address(self.listen, "127.0.0.1:8050")
        if not is_loopback(host) and self.token is None:
            problems.append(
                f"listen = {self.listen!r} is reachable from other machines and no `token` is "
                "set, so anyone could read the dashboard and acknowledge alerts; set "
                'token = "${DASHBOARD_TOKEN}" (at least 16 characters) or listen on '
                "'127.0.0.1:8050'"
            )
        if self.token is not None and len(self.token.get_secret_value()) < MIN_TOKEN:
            problems.append(
                f"token: at least {MIN_TOKEN} characters are needed; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
            )
        registry = (info.context or {}).get("registry")
        if not isinstance(registry, Registry):
            registry = default_registry()
        try:
            resolve_widgets(self, registry)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("; and ".join(problems))
        return self


def resolve_widgets(
    config: DashboardConfig, registry: Registry
) -> list[tuple[type[Widget[Any]], WidgetConfig]]:
    """Each widget entry's class and validated config; ValueError naming the entry, the
    key and the fix."""
    out: list[tuple[type[Widget[Any]], WidgetConfig]] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(config.widgets):
        where = f"widgets[{i}]"
        kind = entry.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValueError(
                f"{where}: every widget needs a `type`; known widget types: "
                + ", ".join(registry.widget_names())
            )
        try:
            cls = registry.widget_class(kind, where=f"{where}.type")
        except PluginError as exc:
            raise ValueError(str(exc)) from None
        try:
            cfg = cls.Config.model_validate(entry)
        except ValidationError as exc:
            raise ValueError(f"{where} ({kind}): {validation_text(exc)}") from None
        wid = cfg.id or kind
        if wid in seen:
            raise ValueError(
                f"{where}: widget id {wid!r} is used by widgets[{seen[wid]}] too; give one "
                "of them another `id`"
            )
        seen[wid] = i
        out.append((cls, cfg))
    return out


class _Source:
    """The `WidgetSource` the widgets read: the state, plus the pipeline around it."""

    def __init__(self, sink: DashboardSink) -> None:
        self._sink = sink

    def series(self, pattern: str, tags: Mapping[str, str] | None = None) -> list[SeriesView]:
        return self._sink.state.series(pattern, tags)

    def events(self, type_name: str) -> list[Event]:
        return self._sink.state.events(type_name)

    def health_events(self) -> Mapping[str, Health]:
        return self._sink.state.health_events()

    def health_entries(self) -> list[HealthEntry]:
        ctx = self._sink.context
        if ctx.health is not None:
            entries = list(ctx.health().entries)
        else:
            entries = component_entries(ctx.pipeline_stats())
        known = {e.subject for e in entries}
        for h in sorted(self.health_events().values(), key=lambda h: h.subject):
            if h.subject.startswith("service:") and h.subject not in known:
                entries.append(HealthEntry.from_event(h))
        return entries

    def pipeline_stats(self) -> Sequence[ComponentStats]:
        return self._sink.context.pipeline_stats()

    @property
    def control(self) -> Callable[[str, str, Mapping[str, Any]], Awaitable[Any]] | None:
        return self._sink.context.control

    @property
    def alerts_component(self) -> str | None:
        return self._sink.alerts_name

    @property
    def optimizer_component(self) -> str | None:
        return self._sink.optimizer_name

    @property
    def history_path(self) -> Path | None:
        return self._sink.history_path


class DashboardSink(Sink[DashboardConfig]):
    type_name = "dashboard"
    Config = DashboardConfig
    description = "a live web dashboard and JSON API over the pipeline's data"
    tunables: ClassVar[Mapping[str, Tunable]] = {}

    async def start(self) -> None:
        cfg = self.config
        ctx = self.context
        registry = ctx.registry or default_registry()
        source = _Source(self)
        self.widgets: list[Widget[Any]] = [
            cls(wc, source) for cls, wc in resolve_widgets(cfg, registry)
        ]
        self._by_id = {w.id: w for w in self.widgets}
        patterns = sorted({p for w in self.widgets for p in w.patterns()})
        self.state = DashboardState(patterns, cfg.max_series, cfg.points)
        self.alerts_name = self._pick("alerts", cfg.alerts)
        self.optimizer_name = self._pick("optimizer", cfg.optimizer)
        self.history_path = self._history()
        self.title = cfg.title
        token = cfg.token.get_secret_value() if cfg.token is not None else None
        host, port = parse_address(cfg.listen, "127.0.0.1:8050")
        self.security = Security(
            local=is_loopback(host),
            token=token,
            redactor=ctx.redactor,
        )
        self.server = DashboardServer(self, host, port)
        await self.server.start()
        self.url = self.server.url
        self._write_record()
        self.log.info("dashboard at %s", self.url)

    async def stop(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            await server.stop()
        record = getattr(self, "_record", None)
        if record is not None:
            try:
                if json.loads(record.read_text()).get("pid") == os.getpid():
                    record.unlink()
            except (OSError, ValueError):
                pass

    async def write(self, batch: Batch) -> None:
        if self.state.write(batch):
            self.server.hub.notify()

    # -- for the server and widgets ---------------------------------------------------

    def widget(self, wid: str) -> Widget[Any] | None:
        return self._by_id.get(wid)

    def refresh_of(self, w: Widget[Any]) -> float:
        own = w.config.refresh if w.config.refresh is not None else w.default_refresh
        return max(own or 0.0, self.config.refresh)

    def describe(self, w: Widget[Any]) -> dict[str, Any]:
        c = w.config
        return {
            "id": w.id,
            "type": w.type_name,
            "title": c.title or w.title or w.type_name,
            "x": c.x,
            "y": c.y,
            "w": c.w,
            "h": c.h,
            "refresh": self.refresh_of(w),
            "series": list(w.patterns()),
            "url": f"/api/widgets/{w.id}",
        }

    def overall_health(self) -> dict[str, Any]:
        entries = _Source(self).health_entries()
        o = overall(entries)
        return {
            "status": str(o.status),
            "reason": o.reason,
            "subjects": [e.to_dict() for e in entries],
        }

    def _pick(self, type_name: str, named: str | None) -> str | None:
        stats = self.context.pipeline_stats()
        of_type = [s.name for s in stats if s.type == type_name]
        if named is not None:
            if named not in {s.name for s in stats}:
                raise ValueError(
                    f"dashboard {self.context.name!r}: `{type_name}` names {named!r}, which is "
                    f"not a component of this pipeline{did_you_mean(named, of_type)}; "
                    f"{type_name} processors: {', '.join(of_type) or 'none'}"
                )
            return named
        return of_type[0] if len(of_type) == 1 else None

    def _history(self) -> Path | None:
        name = self.config.history
        if name is None:
            return None
        get = self.context.config_of
        cfg = get(name) if get is not None else None
        path = getattr(cfg, "path", None)
        if cfg is None or cfg.type != "sqlite" or not isinstance(path, str):
            raise ValueError(
                f"dashboard {self.context.name!r}: `history` = {name!r} is not a sqlite sink "
                'of this pipeline; name the [sinks.<name>] whose type is "sqlite", or remove '
                "`history`"
            )
        return Path(self.context.data_dir) / path

    def _write_record(self) -> None:
        """`<data_dir>/dashboard/<name>.json` = {"url", "pid"}: how `revopipe demo` and
        tests find a dashboard listening on port 0."""
        path = Path(self.context.data_dir) / "dashboard" / f"{self.context.name}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"url": self.url, "pid": os.getpid()}) + "\n")
            tmp.replace(path)
            self._record: Path | None = path
        except OSError as exc:
            self.log.warning("cannot write %s: %s", path, exc)
            self._record = None
