"""The `alerts` processor: evaluates rules on the live stream, runs each alert's lifecycle,
keeps the audit trail, routes notifications and hands them to the durable outbox.

Per evaluation (as data arrives, at most every `evaluate_every`, and on the timer so `for`
and missing data advance without new data):

    Snapshot (latest value per series) -> evaluate(rule) -> RuleLifecycle.step
        -> History (transitions + state, one commit)      -> Alert events downstream
        -> Dispatcher (routes, groups, silences, inhibition) -> Outbox (commit, then send)

Batches pass through unchanged, so the processor can sit inline before sinks. The runtime
never overlaps `process`, `tick`, `flush` and `control` on one instance, so the state needs
no lock of its own. Rule evaluation runs on a worker thread: thousands of series times
dozens of rules would otherwise hold the event loop (and with it the control API and every
other component).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread

from revopipe.batch import Batch, MetricBatch
from revopipe.components import ControlError, ControlMode, Processor
from revopipe.events import Alert as AlertEvent
from revopipe.events import Severity, Tags
from revopipe.notify import Channel
from revopipe_plugins.alerts.config import AlertsConfig
from revopipe_plugins.alerts.history import History
from revopipe_plugins.alerts.lifecycle import (
    Acknowledged,
    Alert,
    Event,
    Notification,
    RuleLifecycle,
    State,
    Transition,
)
from revopipe_plugins.alerts.notify import Outbox
from revopipe_plugins.alerts.routing import Dispatcher, SilenceStore, parse_matchers
from revopipe_plugins.alerts.rules import Snapshot, evaluate
from revopipe_plugins.alerts.view import alert_row, history_row, silence_row

_NS = 1_000_000_000


class AlertsProcessor(Processor[AlertsConfig]):
    type_name = "alerts"
    Config = AlertsConfig
    description = "alert rules on the live stream; routed, durable notifications"
    clock: Callable[[], int] = staticmethod(time.time_ns)
    """Wall clock in ns; tests substitute their own."""
    control_actions: ClassVar[Mapping[str, ControlMode]] = {
        "list": "read",
        "history": "read",
        "silences": "read",
        "outbox": "read",
        "ack": "write",
        "silence": "write",
        "expire": "write",
    }

    async def start(self) -> None:
        cfg = self.config
        self.dir = Path(self.context.data_dir) / "alerts" / self.context.name
        self.dir.mkdir(parents=True, exist_ok=True)
        # Short ticks so a deferred evaluation or a group_wait ends close to on time.
        self.tick_interval = min(cfg.evaluate_every / 4, 0.25)
        self._snapshot = Snapshot()
        self._dirty = False
        self._last_eval = 0
        self._last_persist = 0
        self._rule_errors: dict[str, str] = {}
        self.history = History(self.dir / "history.db")
        self.silences = SilenceStore(self.dir / "silences.db")
        self.lifecycles = {
            r.name: RuleLifecycle(r, cfg.resolved_retention) for r in cfg.resolved_rules
        }
        for name, lc in self.lifecycles.items():
            lc.restore(self.history.load(name))
        # The snapshot starts empty, so right after a restart every firing alert would read
        # as "no data" and resolve before its series come back; they get a grace period.
        self._restored = {
            fp
            for lc in self.lifecycles.values()
            for fp, a in lc.alerts.items()
            if a.state is State.FIRING
        }
        self._grace_until = self.clock() + round(cfg.startup_grace * _NS)
        self.channels: dict[str, Channel] = {
            name: cls(name, ccfg) for name, (cls, ccfg) in cfg.resolved_channels.items()
        }
        self.outbox = Outbox(
            self.dir / "outbox.db",
            self.channels,
            backoff_base=cfg.outbox_backoff,
            backoff_max=max(cfg.outbox_backoff, cfg.outbox_backoff_max),
        )
        route = cfg.effective_route()
        self.dispatcher = Dispatcher(
            route,
            cfg.inhibit_rules,
            send_resolved={n: c.config.send_resolved for n, c in self.channels.items()},
            silences=self.silences,
        )
        # Alerts that were firing before a restart: inhibition must know them, and one
        # whose notification never reached the outbox (killed during group_wait) is sent
        # now; what the outbox already holds is not announced twice.
        sent = await self.outbox.known_keys()
        self.dispatcher.seed(
            [(a, lc.rule) for lc in self.lifecycles.values() for a in lc.alerts.values()],
            self.clock(),
            already_sent=sent.__contains__,
        )
        # A plain asyncio task: start() and stop() may run in different runtime tasks,
        # which an anyio task group does not allow. The runtime is asyncio-only anyway.
        self._delivery = asyncio.get_running_loop().create_task(self._deliver_forever())

    async def stop(self) -> None:
        delivery = getattr(self, "_delivery", None)
        if delivery is not None:
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await delivery
        for closer in (
            getattr(self, "outbox", None) and self.outbox.aclose,
            *(c.aclose for c in getattr(self, "channels", {}).values()),
        ):
            if closer:
                with contextlib.suppress(Exception):
                    await closer()
        for store in (getattr(self, "history", None), getattr(self, "silences", None)):
            if store is not None:
                store.close()

    # -- the stream ---------------------------------------------------------------------

    async def process(self, batch: Batch) -> Sequence[Batch] | Batch:
        if len(batch.metrics):
            self._snapshot.update(batch.metrics)
            self._dirty = True
        now = self.clock()
        if self._dirty and now - self._last_eval >= self.config.evaluate_every * _NS:
            alerts = await self._evaluate(now)
            if alerts is not None:
                return [batch, alerts]
        return batch

    async def tick(self) -> Batch | None:
        now = self.clock()
        out = None
        if now - self._last_eval >= self.config.evaluate_every * _NS:
            out = await self._evaluate(now)
        else:
            await self._dispatch(now)
        return out

    async def flush(self) -> Batch | None:
        """Drain: evaluate the last data, put every waiting group into the outbox (it is
        durable there) and give delivery a short, bounded chance before the process ends."""
        out = await self._evaluate(self.clock())
        await self._dispatch(self.clock(), force=True)
        with anyio.move_on_after(5.0):
            await self.outbox.deliver_due()
        return out

    # -- evaluation ---------------------------------------------------------------------

    async def _evaluate(self, now: int) -> Batch | None:
        self._dirty = False
        self._last_eval = now
        self._snapshot.expire(now - round(self.config.stale_after * _NS))
        stepped = await anyio.to_thread.run_sync(self._step_all, now)
        events: list[AlertEvent] = []
        notifications: list[Notification] = []
        persist = now - self._last_persist >= 10 * _NS
        records = []
        for name, changes in stepped.items():
            lc = self.lifecycles[name]
            if changes or persist:
                records.append((changes, name, list(lc.alerts.values())))
            for e in changes:
                if isinstance(e, Transition):
                    events.append(self._alert_event(lc, e))
                elif isinstance(e, Notification):
                    notifications.append(e)
        if records:
            # Committed before any notification is queued: a restart then resumes from
            # a state that never lags what people were told.
            await anyio.to_thread.run_sync(self._record, records)
        if persist:
            self._last_persist = now
        for n in notifications:
            self.dispatcher.add(n, now)
        await self._dispatch(now)
        return Batch(MetricBatch(), tuple(events)) if events else None

    def _record(self, records: list[tuple[list[Event], str, list[Alert]]]) -> None:
        for changes, rule, alerts in records:
            self.history.record(changes, rule, alerts)

    def _step_all(self, now: int) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {}
        for name, lc in self.lifecycles.items():
            try:
                results = evaluate(lc.rule.condition, self._snapshot)
            except Exception as exc:
                # One broken rule must not stop the others; it reads as "no data".
                if self._rule_errors.get(name) != str(exc):
                    self.log.error("rule %r failed to evaluate: %r", name, exc)
                self._rule_errors[name] = str(exc)
                self.context.stats.errors += 1
                results = {}
            if self._restored and now < self._grace_until:
                results = self._held(lc, results)
            out[name] = lc.step(now, results)
        return out

    def _held(self, lc: RuleLifecycle, results: dict[Tags, float]) -> dict[Tags, float]:
        """`results` plus the restored firing alerts of `lc` it lacks, at their last value."""
        missing = {
            a.labels: a.value
            for fp, a in lc.alerts.items()
            if fp in self._restored and a.state is State.FIRING and a.labels not in results
        }
        return {**results, **missing} if missing else results

    def _alert_event(self, lc: RuleLifecycle, t: Transition) -> AlertEvent:
        rule = lc.rule
        labels = {**dict(t.labels), **rule.labels}
        summary = rule.render_annotations(labels, t.value).get("summary", rule.name)
        return AlertEvent(
            rule=t.rule,
            state=t.to_state.value,
            severity=Severity(rule.severity),
            summary=summary,
            labels=t.labels,
            value=t.value,
            timestamp=t.at,
        )

    async def _dispatch(self, now: int, force: bool = False) -> None:
        due = self.dispatcher.flush(now, force=force)
        for out in due:
            if out.channel not in self.channels:
                self.log.error("route names channel %r, which is not configured", out.channel)
                continue
            await self.outbox.enqueue(out.channel, out.notifications)

    async def _deliver_forever(self) -> None:
        try:
            await self.outbox.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never silently: rows stay pending for the next start
            self.log.exception("alert delivery stopped: %r", exc)
            self.context.stats.errors += 1

    # -- control (revopipe alerts ...) ------------------------------------------------------

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        handler = _ACTIONS.get(action)
        if handler is None:
            raise ControlError(
                f"alerts {self.context.name!r}: no action {action!r}; known: "
                + ", ".join(sorted(_ACTIONS)),
                status=404,
            )
        return await handler(self, params)

    async def _list(self, params: Mapping[str, Any]) -> Any:
        now = self.clock()
        state = str(params.get("state", "") or "")
        rows = []
        for lc in self.lifecycles.values():
            for a in lc.alerts.values():
                if state and a.state.value != state:
                    continue
                labels = dict(a.labels) | lc.rule.labels | {"alertname": lc.rule.name}
                labels["severity"] = lc.rule.severity
                rows.append(alert_row(a, lc.rule, self.dispatcher.muted(labels, now)))
        rows.sort(key=lambda r: (r["state"] != "firing", r["rule"], r["fingerprint"]))
        return {"alerts": rows, "rules": len(self.lifecycles), "errors": self._rule_errors}

    async def _ack(self, params: Mapping[str, Any]) -> Any:
        target = str(params.get("id", "") or "")
        by = str(params.get("by", "") or "").strip()
        if not target or not by:
            raise ControlError(
                "ack needs `id` (a fingerprint, a unique prefix of one, or a rule name) and "
                "`by` (who acknowledges)"
            )
        now = self.clock()
        matches = [
            (lc, a)
            for lc in self.lifecycles.values()
            for a in lc.alerts.values()
            if a.state in (State.PENDING, State.FIRING)
            and (a.fingerprint.startswith(target) or lc.rule.name == target)
        ]
        if not matches:
            raise ControlError(
                f"ack: no pending or firing alert matches {target!r}; see `revopipe alerts list`",
                status=404,
            )
        rules = {lc.rule.name for lc, _ in matches}
        if len(matches) > 1 and target not in rules:
            raise ControlError(
                f"ack: {target!r} matches {len(matches)} alerts; give more of the fingerprint"
            )
        acked = []
        for lc, a in matches:
            event: Acknowledged = lc.ack(a.fingerprint, by, now)
            self.history.record([event], lc.rule.name, list(lc.alerts.values()))
            self.dispatcher.acknowledged(a.fingerprint, by, now)
            acked.append(a.fingerprint)
        await self._dispatch(now)
        return {"acknowledged": acked, "by": by}

    async def _silence(self, params: Mapping[str, Any]) -> Any:
        raw = params.get("matchers")
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        try:
            matchers = parse_matchers(texts)
        except ValueError as exc:
            raise ControlError(f"silence: {exc}") from None
        seconds = params.get("duration")
        try:
            duration = float(seconds) if seconds is not None else 3600.0
        except (TypeError, ValueError):
            raise ControlError(f"silence: duration {seconds!r} is not seconds") from None
        if duration <= 0:
            raise ControlError("silence: duration must be above zero")
        now = self.clock()
        try:
            silence = self.silences.add(
                matchers,
                starts_at=now,
                ends_at=now + round(duration * _NS),
                created_by=str(params.get("by", "") or "unknown"),
                comment=str(params.get("comment", "") or ""),
            )
        except ValueError as exc:
            raise ControlError(f"silence: {exc}") from None
        return {"silence": silence_row(silence, now)}

    async def _silences(self, params: Mapping[str, Any]) -> Any:
        now = self.clock()
        every = str(params.get("all", "")).lower() in ("1", "true", "yes")
        return {"silences": [silence_row(s, now) for s in self.silences.list(every, now)]}

    async def _expire(self, params: Mapping[str, Any]) -> Any:
        sid = str(params.get("id", "") or "")
        try:
            self.silences.expire(sid, self.clock())
        except LookupError as exc:
            raise ControlError(f"expire: {exc}", status=404) from None
        return {"expired": sid}

    async def _history(self, params: Mapping[str, Any]) -> Any:
        def as_int(key: str) -> int | None:
            value = params.get(key)
            if value in (None, ""):
                return None
            try:
                return int(str(value))
            except ValueError:
                raise ControlError(f"history: {key} must be a whole number") from None

        limit = as_int("limit") or 100
        entries = self.history.query(
            rule=str(params.get("rule") or "") or None,
            fingerprint=str(params.get("fingerprint") or "") or None,
            since=as_int("since"),
            limit=max(1, min(limit, 10_000)),
        )
        return {"history": [history_row(e) for e in entries]}

    async def _outbox(self, params: Mapping[str, Any]) -> Any:
        counts = await self.outbox.counts()
        return {
            "pending": counts.pending,
            "delivered": counts.delivered,
            "dead": counts.dead,
            "dead_rows": await self.outbox.dead(),
        }


_ACTIONS: dict[str, Callable[[AlertsProcessor, Mapping[str, Any]], Awaitable[Any]]] = {
    "list": AlertsProcessor._list,
    "ack": AlertsProcessor._ack,
    "silence": AlertsProcessor._silence,
    "silences": AlertsProcessor._silences,
    "expire": AlertsProcessor._expire,
    "history": AlertsProcessor._history,
    "outbox": AlertsProcessor._outbox,
}
