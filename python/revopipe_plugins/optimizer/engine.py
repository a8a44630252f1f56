"""Runs optimizer actions: propose, then (mode "apply") change, measure, keep or revert.

One change per action at a time, measured like an A/B test in time: the action's figure
over `measure_for` seconds before the change against the same length after it (after a
settling pause of one evaluation, so the first window does not mix old and new). An
after-figure worse than the before-figure by more than `tolerance` (relative), or no
figure at all, reverts the change. Every step goes to the journal; `dry_run` records the
proposal and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from revopipe.actions import Action, Proposal
from revopipe.tuning import Tuning, TuningError
from revopipe_plugins.optimizer.config import ActionsSettings
from revopipe_plugins.optimizer.findings import Finding, fmt
from revopipe_plugins.optimizer.journal import Journal, Step
from revopipe_plugins.optimizer.store import SeriesStore

log = logging.getLogger("revopipe.optimizer.actions")


@dataclass(slots=True)
class _Trial:
    action: Action[Any]
    proposal: Proposal
    previous: dict[str, float]
    change_id: int
    before: float
    applied_at: float
    judge_at: float


class ActionEngine:
    def __init__(
        self,
        actions: Sequence[Action[Any]],
        settings: ActionsSettings,
        tuning: Tuning,
        journal: Journal,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.actions = list(actions)
        self.settings = settings
        self.tuning = tuning
        self.journal = journal
        self.clock = clock
        self._trials: dict[str, _Trial] = {}
        self._last_change: dict[str, float] = {}
        self._dry_seen: set[tuple[str, str, str]] = set()

    def step(self, store: SeriesStore) -> list[Finding]:
        """One evaluation: judge finished trials, then ask idle actions for proposals.
        Returns findings describing proposals (dry run) and changes made or reverted."""
        if self.settings.mode == "off":
            return []
        out: list[Finding] = []
        now = self.clock()
        for name, trial in list(self._trials.items()):
            if now >= trial.judge_at:
                out.append(self._judge(trial, store, now))
                del self._trials[name]
            else:
                out.append(
                    self._finding(
                        trial.action,
                        trial.proposal,
                        "applied, measuring",
                        trial.previous,
                        "medium",
                        trial.before,
                    )
                )
        knobs = self.tuning.knobs()
        for action in self.actions:
            name = action.type_name
            if name in self._trials:
                continue
            if now - self._last_change.get(name, -1e18) < self.settings.cooldown:
                continue
            try:
                proposals = list(action.propose(store, knobs))
            except Exception as exc:
                # a broken action must not stop the optimizer or the other actions
                log.error("optimizer action %r raised in propose(): %r", name, exc)
                continue
            for p in proposals[:1]:  # one change at a time per action: judge it alone
                found = self._dry_run(action, p) if self.settings.mode == "dry_run" else None
                if found is None and self.settings.mode == "apply":
                    found = self._apply(action, p, store, now)
                if found is not None:
                    out.append(found)
        return out

    def _dry_run(self, action: Action[Any], p: Proposal) -> Finding | None:
        current = {k.key: k.value for k in self.tuning.knobs() if k.component == p.component}
        previous = {k: current.get(k, float("nan")) for k in p.changes}
        seen = (action.type_name, p.component, repr(sorted(p.changes.items())))
        if seen not in self._dry_seen:
            self._dry_seen.add(seen)
            self.journal.record(
                Step(
                    action.type_name,
                    p.component,
                    "dry_run",
                    p.changes,
                    previous,
                    p.measure_name,
                    p.reason,
                ),
                time.time_ns(),
            )
        return self._finding(action, p, "would apply (dry run)", previous, "low")

    def _apply(
        self, action: Action[Any], p: Proposal, store: SeriesStore, now: float
    ) -> Finding | None:
        window = self.settings.measure_for
        before = self._measure(action, p, store, now - window, now)
        if before is None:
            log.info(
                "optimizer action %r: no %s figure for the last %.0fs yet; not changing %r",
                action.type_name,
                p.measure_name,
                window,
                p.component,
            )
            return None
        try:
            previous = self.tuning.retune(p.component, p.changes)
        except TuningError as exc:
            self.journal.record(
                Step(
                    action.type_name,
                    p.component,
                    "failed",
                    p.changes,
                    {},
                    p.measure_name,
                    f"{p.reason}; refused: {exc}",
                    before=before,
                ),
                time.time_ns(),
            )
            log.error("optimizer action %r: %s", action.type_name, exc)
            self._last_change[action.type_name] = now
            return None
        change_id = self.journal.record(
            Step(
                action.type_name,
                p.component,
                "applied",
                p.changes,
                previous,
                p.measure_name,
                p.reason,
                before=before,
            ),
            time.time_ns(),
        )
        self._last_change[action.type_name] = now
        # the first evaluation after the change is left out of the after-window
        settle = min(window / 4, 30.0)
        self._trials[action.type_name] = _Trial(
            action, p, previous, change_id, before, now + settle, now + settle + window
        )
        return self._finding(action, p, "applied, measuring", previous, "medium", before)

    def _judge(self, trial: _Trial, store: SeriesStore, now: float) -> Finding:
        p = trial.proposal
        name = trial.action.type_name
        after = self._measure(trial.action, p, store, trial.applied_at, now)
        tol = self.settings.tolerance
        worse = after is None or after > trial.before * (1 + tol) + 1e-12
        if not worse:
            self.journal.record(
                Step(
                    name,
                    p.component,
                    "kept",
                    p.changes,
                    trial.previous,
                    p.measure_name,
                    "after-figure not worse",
                    trial.before,
                    after,
                    trial.change_id,
                ),
                time.time_ns(),
            )
            return self._finding(
                trial.action, p, "kept", trial.previous, "low", trial.before, after
            )
        why = (
            "no after-figure"
            if after is None
            else f"{p.measure_name} worse: {fmt(trial.before)} -> {fmt(after)}"
        )
        try:
            self.tuning.retune(p.component, trial.previous)
            step = "reverted"
        except TuningError as exc:
            step, why = "failed", f"{why}; revert refused: {exc}"
        self.journal.record(
            Step(
                name,
                p.component,
                step,
                trial.previous,
                p.changes,
                p.measure_name,
                why,
                trial.before,
                after,
                trial.change_id,
            ),
            time.time_ns(),
        )
        log.warning("optimizer action %r on %r %s: %s", name, p.component, step, why)
        return self._finding(trial.action, p, step, trial.previous, "medium", trial.before, after)

    @staticmethod
    def _measure(
        action: Action[Any], p: Proposal, store: SeriesStore, since: float, until: float
    ) -> float | None:
        try:
            return action.measure(store, p, since, until)
        except Exception as exc:
            log.error("optimizer action %r raised in measure(): %r", action.type_name, exc)
            return None

    @staticmethod
    def _finding(
        action: Action[Any],
        p: Proposal,
        state: str,
        previous: dict[str, float],
        risk: str,
        before: float | None = None,
        after: float | None = None,
    ) -> Finding:
        evidence = {
            "component": p.component,
            "changes": ", ".join(
                f"{k}: {fmt(previous.get(k, float('nan')))} -> {fmt(v)}"
                for k, v in p.changes.items()
            ),
            "state": state,
            "measure": p.measure_name,
            "reason": p.reason,
            **p.evidence,
        }
        if before is not None:
            evidence["before"] = fmt(before)
        if after is not None:
            evidence["after"] = fmt(after)
        return Finding(
            key=f"action:{action.type_name}:{p.component}",
            detector=f"action:{action.type_name}",
            title=f"{p.title} [{state}]",
            action=p.title,
            priority="medium",
            risk="low" if risk == "low" else "medium",
            evidence=evidence,
        )
