"""From lifecycle notifications to channel messages, as Alertmanager's dispatcher: route
each alert, gather alerts into groups, hold a new group for `group_wait`, send later
changes at most every `group_interval`, leave out silenced and inhibited alerts. Pure logic:
time comes in as an argument (Unix ns); only the silence store touches disk.

Life of a group (per route and values of its `group_by` labels):

- Created by its first alert; flushed `group_wait` later.
- A change (a new firing alert, a resolve, a repeat, an escalation) schedules a flush at the
  next `group_interval` boundary after the previous flush (last + k * group_interval).
- A flush sends, as one `Outgoing`, every firing alert of the group that is not muted plus
  the alerts resolved since the last flush (when the channel's `send_resolved` is on and
  the receiver was told the alert fired) — but only when something in it is new to the
  receiver; re-sent alerts keep their dedup key so receivers can drop them. Resolved alerts
  leave the group after a flush; a group with no alerts left is dropped.
- While a group holds a muted firing alert it is re-checked every `group_interval`, so the
  alert goes out once its silence expires or the inhibiting alert resolves.

Dedup keys (stable across restarts: the outbox and receivers drop repeats):
`{fingerprint}:{starts_at}:{status}` for firing, resolved and acknowledged, plus `:r{at}`
for a repeat and `:e{tier}` for an escalation. Group keys: `{route path}:{name=value,...}`
of the group labels, with `%`, `,`, `=` and `:` in names and values %-escaped so the text
after the last `:` always splits cleanly (`group_labels` reads it back).
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from revopipe_plugins.alerts.lifecycle import Alert, State
from revopipe_plugins.alerts.lifecycle import Notification as AlertEvent
from revopipe_plugins.alerts.notify import Notification
from revopipe_plugins.alerts.routing.inhibit import DEFAULT_INHIBIT_RULES, Inhibitor, InhibitRule
from revopipe_plugins.alerts.routing.route import DEFAULT_GROUP_INTERVAL, Route
from revopipe_plugins.alerts.routing.silence import Silence, SilenceStore
from revopipe_plugins.alerts.rule import RuleConfig

__all__ = [
    "ESCALATION_LABEL",
    "EXPLICIT_ESCALATION_PATH",
    "Dispatcher",
    "DispatcherStats",
    "Muted",
    "Outgoing",
    "dedup_key",
    "group_key",
    "group_labels",
    "restored_events",
]

ESCALATION_LABEL = "escalation_tier"
EXPLICIT_ESCALATION_PATH = "escalation"  # route path of escalations to a named channel
_NS = 1_000_000_000
_ESCAPE = {"%": "%25", ",": "%2C", "=": "%3D", ":": "%3A"}
_UNESCAPE = {v: k for k, v in _ESCAPE.items()}
_CODES = re.compile("|".join(_UNESCAPE))

Status = Literal["firing", "resolved", "acknowledged"]


def dedup_key(
    fingerprint: str, starts_at: int, status: Status, *, repeat_at: int | None = None, tier: int = 0
) -> str:
    key = f"{fingerprint}:{starts_at}:{status}"
    if repeat_at is not None:
        key += f":r{repeat_at}"
    if tier:
        key += f":e{tier}"
    return key


def _esc(text: str) -> str:
    return "".join(_ESCAPE.get(c, c) for c in text)


def _unesc(text: str) -> str:
    return _CODES.sub(lambda m: _UNESCAPE[m.group()], text)


def group_key(path: str, labels: Iterable[tuple[str, str]]) -> str:
    return path + ":" + ",".join(f"{_esc(k)}={_esc(v)}" for k, v in labels)


def group_labels(key: str) -> dict[str, str]:
    """The group labels written in a group key (the inverse of `group_key`)."""
    out: dict[str, str] = {}
    for part in key.rpartition(":")[2].split(","):
        name, sep, value = part.partition("=")
        if sep:
            out[_unesc(name)] = _unesc(value)
    return out


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for `channel`: the outbox batches rows by (channel, group_key)."""

    channel: str
    group_key: str
    notifications: tuple[Notification, ...]


@dataclass(frozen=True, slots=True)
class Muted:
    """Why an alert was not sent at its last flush: the silences and/or the inhibiting
    alerts' fingerprints."""

    fingerprint: str
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        parts = [
            p for p, on in (("silenced", self.silenced_by), ("inhibited", self.inhibited_by)) if on
        ]
        return "+".join(parts)


@dataclass(slots=True)
class DispatcherStats:
    """Counts since start; a muted alert counts once per group and dedup key."""

    sent: int = 0  # notifications handed out (all statuses)
    messages: int = 0  # Outgoing handed out
    silenced: int = 0
    inhibited: int = 0


@dataclass(slots=True)
class _Entry:
    event: AlertEvent  # the latest lifecycle notification for the alert
    extra: dict[str, str]  # labels added for routing (escalation_tier)
    status: Literal["firing", "resolved"]
    key: str  # the current dedup key
    ends_at: int = 0
    sent_key: str | None = None  # the dedup key last sent to this group's channel
    muted_key: str | None = None  # the dedup key last counted as muted

    @property
    def labels(self) -> dict[str, str]:
        return {**self.event.labels, **self.extra} if self.extra else self.event.labels


_GroupId = tuple[str, str, tuple[tuple[str, str], ...]]  # path, channel, group labels


@dataclass(slots=True)
class _Group:
    id: _GroupId
    key: str
    channel: str
    wait: int
    interval: int
    immediate: bool  # explicit escalations: every change goes out at once
    created_at: int
    entries: dict[str, _Entry] = field(default_factory=dict)
    last_flush: int | None = None
    next_flush: int | None = None


SendResolved = Mapping[str, bool] | Callable[[str], bool]


class Dispatcher:
    """Feed it lifecycle notifications (`add`) and acknowledgements (`acknowledged`);
    call `flush(now)` at `next_flush()` and enqueue what it returns.

    `route` None (no channels configured) routes nothing; only escalations naming a channel
    are sent. `inhibit_rules` defaults to `DEFAULT_INHIBIT_RULES`; pass `()` for none.
    `send_resolved` says per channel whether resolved alerts are sent (a mapping — channels
    missing from it default to True — or a callable). `silences` may be None (no
    silences)."""

    def __init__(
        self,
        route: Route | None,
        inhibit_rules: Iterable[InhibitRule] = DEFAULT_INHIBIT_RULES,
        *,
        silences: SilenceStore | None = None,
        send_resolved: SendResolved | None = None,
        generator_url: str | None = None,
    ) -> None:
        self.route = route
        self.inhibitor = Inhibitor(tuple(inhibit_rules))
        self.silences = silences
        self.generator_url = generator_url
        if send_resolved is None:
            self._send_resolved: Callable[[str], bool] = lambda _channel: True
        elif callable(send_resolved):
            self._send_resolved = send_resolved
        else:
            table = dict(send_resolved)
            self._send_resolved = lambda channel: table.get(channel, True)
        self.stats = DispatcherStats()
        self._groups: dict[_GroupId, _Group] = {}
        self._by_fp: dict[str, set[_GroupId]] = {}
        self._heap: list[tuple[int, int, _GroupId]] = []
        self._seq = itertools.count()
        self._muted: dict[str, Muted] = {}
        self._acks: list[tuple[int, Outgoing]] = []
        interval = route.resolved()[0].group_interval if route is not None else 0.0
        # Explicit escalations flush at once; this only paces re-checks of muted ones.
        self._escalation_interval = round((interval or DEFAULT_GROUP_INTERVAL) * _NS)

    # --- input --------------------------------------------------------------------------

    def add(self, event: AlertEvent, now: int | None = None) -> None:
        """Take one lifecycle notification (firing, repeat, escalate or resolved). `now`
        (default: the event's `at`) is when the change happened, which starts group_wait
        and picks the group_interval boundary."""
        if now is not None and now != event.at:
            event = replace(event, at=now)
        fp = event.fingerprint
        if event.reason == "resolved":
            self.inhibitor.resolved(fp)
            self._muted.pop(fp, None)
            self._resolve(event)
            return
        self.inhibitor.firing(fp, event.labels)
        if event.reason == "firing":
            key = dedup_key(fp, event.starts_at, "firing")
            for gid in self._route(event.labels, event.at):
                self._upsert(gid, event, {}, key)
        elif event.reason == "repeat":
            key = dedup_key(fp, event.starts_at, "firing", repeat_at=event.at)
            targets = set(self._by_fp.get(fp, ()))
            targets.update(self._route(event.labels, event.at))
            for gid in sorted(targets):
                old = self._groups[gid].entries.get(fp)
                extra = old.extra if old is not None and old.status == "firing" else {}
                self._upsert(gid, event, extra, key)
        else:  # escalate
            key = dedup_key(fp, event.starts_at, "firing", tier=event.tier)
            extra = {ESCALATION_LABEL: str(event.tier)}
            if event.channel is not None:
                gids = [self._explicit_group(event, event.channel)]
            else:
                gids = self._route({**event.labels, **extra}, event.at)
            for gid in gids:
                self._upsert(gid, event, extra, key)

    def acknowledged(self, fingerprint: str, by: str, at: int) -> None:
        """`by` acknowledged the alert at `at`: every channel that was sent the alert gets
        an `acknowledged` notification (one Outgoing per group) from the next `flush`,
        which is due at once — no group_wait or group_interval. Nothing goes out for an
        alert that was never sent (still in group_wait, muted, or unknown)."""
        for gid in sorted(self._by_fp.get(fingerprint, ())):
            g = self._groups[gid]
            e = g.entries[fingerprint]
            if e.status != "firing" or e.sent_key is None:
                continue
            ev = e.event
            n = Notification(
                dedup_key=dedup_key(fingerprint, ev.starts_at, "acknowledged"),
                status="acknowledged",
                alert_name=ev.rule,
                severity=ev.severity,
                fingerprint=fingerprint,
                group_key=g.key,
                starts_at_ns=ev.starts_at,
                labels=e.labels,
                annotations={**ev.annotations, "acknowledged_by": by},
                generator_url=self.generator_url,
            )
            self._acks.append((at, Outgoing(g.channel, g.key, (n,))))

    def seed(
        self,
        alerts: Iterable[AlertEvent | tuple[Alert, RuleConfig]],
        now: int,
        already_sent: Callable[[str], bool] | None = None,
    ) -> None:
        """After a restart, before any `add`: the alerts the restored lifecycles hold, as
        (Alert, its rule) pairs (only firing ones count; see `restored_events`) or as
        firing/escalate notifications.

        Each is routed and grouped as usual and counts as firing for inhibition. An alert
        whose dedup key `already_sent(key)` confirms (by default: every one) counts as
        sent, so it is not announced again — a restart must not page twice — and its
        resolve still reaches the channels. Pass `already_sent` (e.g. a look-up of the key
        in the outbox) to have alerts that were still in group_wait at the crash sent now;
        they are then due at their original group_wait."""
        sent = already_sent or (lambda _key: True)
        for item in alerts:
            events = restored_events(*item) if isinstance(item, tuple) else [item]
            for event in events:
                self.add(event)
        for g in self._groups.values():
            for e in g.entries.values():
                if e.status == "firing" and sent(e.key):
                    e.sent_key = e.key
            if all(e.sent_key == e.key for e in g.entries.values()):
                g.last_flush = now if g.last_flush is None else g.last_flush
                g.next_flush = None  # leaves a stale heap item, skipped by next_flush

    # --- output -------------------------------------------------------------------------

    def next_flush(self) -> int | None:
        """When `flush` next has work (Unix ns), or None while nothing is scheduled."""
        heap = self._heap
        while heap:
            at, _, gid = heap[0]
            g = self._groups.get(gid)
            if g is not None and g.next_flush == at:
                break
            heapq.heappop(heap)
        due = [heap[0][0]] if heap else []
        if self._acks:
            due.append(min(at for at, _ in self._acks))
        return min(due) if due else None

    def flush(self, now: int, force: bool = False) -> list[Outgoing]:
        """The messages due at `now`: acknowledgements first, then groups in due order.
        `force` flushes every scheduled group now, group_wait or not (at shutdown)."""
        out = [o for _, o in self._acks]
        self._acks.clear()
        silences: list[Silence] | None = None  # read once per flush, only when needed
        heap = self._heap
        flushed: set[_GroupId] = set()
        deferred: list[tuple[int, int, _GroupId]] = []
        while heap:
            at, _, gid = heap[0]
            if at > now and not force:
                break
            item = heapq.heappop(heap)
            g = self._groups.get(gid)
            if g is None or g.next_flush != at:
                continue  # stale: the group was dropped or rescheduled
            if gid in flushed:
                # rescheduled by this very flush (it holds a muted alert): with `force`
                # it would come round again at once, forever; it waits for its time
                deferred.append(item)
                continue
            flushed.add(gid)
            if silences is None:
                silences = self.silences.active(now) if self.silences is not None else []
            msg = self._flush_group(g, now, silences)
            if msg is not None:
                out.append(msg)
        for item in deferred:
            heapq.heappush(heap, item)
        self.stats.messages += len(out)
        self.stats.sent += sum(len(o.notifications) for o in out)
        return out

    @property
    def muted_alerts(self) -> Mapping[str, Muted]:
        """Firing alerts left out at their last flush, by fingerprint, with why."""
        return self._muted

    def check(self, labels: Mapping[str, str], now: int, fingerprint: str | None = None) -> Muted:
        """Whether an alert with `labels` would be muted at `now`, and by what."""
        silenced = tuple(self.silences.muted_by(labels, now)) if self.silences else ()
        inhibited = tuple(self.inhibitor.inhibited_by(labels, fingerprint))
        return Muted(fingerprint or "", silenced, inhibited)

    def muted(
        self, labels: Mapping[str, str], now: int, fingerprint: str | None = None
    ) -> list[str]:
        """For listings: `silence:<id>` and `inhibited_by:<fingerprint>` for everything
        that mutes an alert with `labels` at `now`; empty when it would be sent. Give the
        alert's `fingerprint` so it is not counted as inhibiting itself."""
        m = self.check(labels, now, fingerprint)
        return [f"silence:{s}" for s in m.silenced_by] + [
            f"inhibited_by:{fp}" for fp in m.inhibited_by
        ]

    @property
    def group_count(self) -> int:
        return len(self._groups)

    def groups_of(self, fingerprint: str) -> list[tuple[str, str]]:
        """(channel, group_key) of every group holding the alert."""
        return sorted(
            (self._groups[g].channel, self._groups[g].key) for g in self._by_fp.get(fingerprint, ())
        )

    # --- internals ----------------------------------------------------------------------

    def _route(self, labels: Mapping[str, str], at: int) -> list[_GroupId]:
        out: list[_GroupId] = []
        if self.route is None:
            return out  # no channels configured: alerts are tracked, never sent
        for r in self.route.match(labels):
            if r.channel is None:
                continue  # only when validate_channels was not heeded: nowhere to send
            values = r.group_labels(labels)
            gid: _GroupId = (r.path, r.channel, values)
            if gid not in self._groups:
                self._groups[gid] = _Group(
                    gid,
                    group_key(r.path, values),
                    r.channel,
                    wait=round(r.group_wait * _NS),
                    interval=round(r.group_interval * _NS),
                    immediate=False,
                    created_at=at,
                )
            out.append(gid)
        return out

    def _explicit_group(self, event: AlertEvent, channel: str) -> _GroupId:
        values = (("alertname", event.labels.get("alertname", event.rule)),)
        gid: _GroupId = (EXPLICIT_ESCALATION_PATH, channel, values)
        if gid not in self._groups:
            self._groups[gid] = _Group(
                gid,
                group_key(EXPLICIT_ESCALATION_PATH, values),
                channel,
                wait=0,
                interval=self._escalation_interval,
                immediate=True,
                created_at=event.at,
            )
        return gid

    def _upsert(self, gid: _GroupId, event: AlertEvent, extra: dict[str, str], key: str) -> None:
        g = self._groups[gid]
        fp = event.fingerprint
        old = g.entries.get(fp)
        if old is not None and old.status == "firing" and old.key == key:
            old.event = event  # same state: fresher value/annotations, nothing to send
            return
        entry = _Entry(event, extra, "firing", key)
        if old is not None and old.event.starts_at == event.starts_at:
            entry.sent_key = old.sent_key  # same incident: the receiver knows it fires
        g.entries[fp] = entry
        self._by_fp.setdefault(fp, set()).add(gid)
        self._changed(g, event.at)

    def _resolve(self, event: AlertEvent) -> None:
        fp = event.fingerprint
        key = dedup_key(fp, event.starts_at, "resolved")
        for gid in sorted(self._by_fp.get(fp, ())):
            g = self._groups[gid]
            e = g.entries[fp]
            if e.sent_key is None or not self._send_resolved(g.channel):
                # The receiver never heard of it (or does not want resolves): just forget.
                self._remove(g, fp)
                continue
            if e.status == "resolved":
                continue
            e.event = event
            e.status = "resolved"
            e.key = key
            e.ends_at = event.at
            self._changed(g, event.at)

    def _remove(self, g: _Group, fp: str) -> None:
        del g.entries[fp]
        gids = self._by_fp.get(fp)
        if gids is not None:
            gids.discard(g.id)
            if not gids:
                del self._by_fp[fp]
        if not g.entries:
            del self._groups[g.id]

    def _changed(self, g: _Group, at: int) -> None:
        if g.last_flush is None:
            due = g.created_at + g.wait
        elif g.immediate or g.interval == 0:
            due = at
        else:
            due = _boundary(g.last_flush, g.interval, at)
        self._schedule(g, due)

    def _schedule(self, g: _Group, due: int) -> None:
        if g.next_flush is not None and g.next_flush <= due:
            return
        g.next_flush = due
        heapq.heappush(self._heap, (due, next(self._seq), g.id))

    def _flush_group(self, g: _Group, now: int, silences: list[Silence]) -> Outgoing | None:
        g.next_flush = None
        g.last_flush = now
        send_resolved = self._send_resolved(g.channel)
        batch: list[tuple[_Entry, Notification]] = []
        any_muted = False
        for fp, e in sorted(g.entries.items(), key=lambda kv: (kv[1].event.starts_at, kv[0])):
            if e.status == "resolved":
                # Told that it fired (checked when it resolved): tell that it is over, even
                # if a silence now covers it, so the receiver can close the incident.
                if send_resolved:
                    batch.append((e, self._notification(g, e)))
                continue
            # Silences see the routed labels (a silence may name escalation_tier);
            # inhibition compares the alert's own labels with other alerts'.
            silenced = tuple(sorted(s.id for s in silences if s.matches(e.labels)))
            inhibited = tuple(self.inhibitor.inhibited_by(e.event.labels, fp))
            if silenced or inhibited:
                self._record_muted(e, Muted(fp, silenced, inhibited))
                any_muted = True
                continue
            self._muted.pop(fp, None)
            batch.append((e, self._notification(g, e)))
        msg: Outgoing | None = None
        if any(e.sent_key != e.key for e, _ in batch):
            notes = tuple(n for _, n in batch)
            msg = Outgoing(g.channel, g.key, notes)
            for e, _ in batch:
                e.sent_key = e.key
        for fp in [fp for fp, e in g.entries.items() if e.status == "resolved"]:
            self._remove(g, fp)
        if any_muted and g.id in self._groups:
            self._schedule(g, now + g.interval if g.interval else now + self._escalation_interval)
        return msg

    def _record_muted(self, e: _Entry, muted: Muted) -> None:
        self._muted[muted.fingerprint] = muted
        if e.muted_key != e.key:
            e.muted_key = e.key
            if muted.silenced_by:
                self.stats.silenced += 1
            else:
                self.stats.inhibited += 1

    def _notification(self, g: _Group, e: _Entry) -> Notification:
        ev = e.event
        return Notification(
            dedup_key=e.key,
            status=e.status,
            alert_name=ev.rule,
            severity=ev.severity,
            fingerprint=ev.fingerprint,
            group_key=g.key,
            starts_at_ns=ev.starts_at,
            ends_at_ns=e.ends_at,
            labels=e.labels,
            annotations=ev.annotations,
            generator_url=self.generator_url,
        )


def restored_events(alert: Alert, rule: RuleConfig) -> list[AlertEvent]:
    """What the lifecycle told about a restored firing alert: its firing notification plus
    one escalate notification per tier already emitted. Empty unless it is firing. The
    labels and annotations are built as the lifecycle builds them."""
    if alert.state is not State.FIRING or alert.firing_since is None:
        return []
    labels = {**dict(alert.labels), **rule.labels}
    labels["alertname"] = rule.name
    labels["severity"] = rule.severity
    base = AlertEvent(
        reason="firing",
        rule=rule.name,
        fingerprint=alert.fingerprint,
        labels=labels,
        annotations=rule.render_annotations(labels, alert.value),
        severity=rule.severity,
        value=alert.value,
        starts_at=alert.firing_since,
        at=alert.firing_since,
    )
    out = [base]
    for tier in range(1, alert.escalated + 1):
        channel = rule.escalate_to[tier - 1] if tier <= len(rule.escalate_to) else None
        out.append(replace(base, reason="escalate", tier=tier, channel=channel))
    return out


def _boundary(last: int, interval: int, at: int) -> int:
    """The first `last + k * interval` (k >= 1) not before `at`."""
    k = max(1, -(-(at - last) // interval))
    return last + k * interval
