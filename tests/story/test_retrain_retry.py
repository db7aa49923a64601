"""The story's retrain phase: a candidate the gate blocks is the loop working; the operator retrains with more labels.

Pure logic of the phase, with a scripted operator (the real API path runs in tests/e2e/test_demo.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fleetloop.story.operator import StoryError
from fleetloop.story.profile import PROFILES
from fleetloop.story.script import RETRAIN_ATTEMPTS, Story
from fleetloop.story.timeline import Timeline
from hub.training.triggers import TriggerPolicy


class ScriptedOperator:
    """Answers like the hub API: each retrain job succeeds with the next verdict of `verdicts`."""

    def __init__(self, verdicts: list[str]) -> None:
        self.verdicts = verdicts
        self.done: list[dict[str, Any]] = [self._job("drift")]
        self.requests: list[str] = []

    def _job(self, trigger: str) -> dict[str, Any]:
        n = len(getattr(self, "done", [])) + 2
        return {"id": f"job-{n}", "trigger": trigger, "reason": "r", "created_ts": 0.0, "finished_ts": 1.0,
                "label_set_id": None, "status": "succeeded", "result_version": f"v{n}",
                "gate_verdict": self.verdicts[n - 2]}

    def jobs(self, limit: int = 10) -> list[dict[str, Any]]:
        return list(reversed(self.done))[:limit]

    def model(self, version: str) -> dict[str, Any]:
        job = next(j for j in self.done if j["result_version"] == version)
        return {"gate": {"passed": job["gate_verdict"] == "pass", "reasons": [] if job["gate_verdict"] == "pass"
                         else ["cohort_recall:site-b: significantly worse"]}}

    def retrain(self, reason: str) -> dict[str, Any]:
        self.requests.append(reason)
        self.done.append(self._job("manual"))
        return {"job_id": self.done[-1]["id"]}


class HubRetries(ScriptedOperator):
    """After an insufficient_data verdict the hub's own trigger queues the next job (on its second poll)."""

    polls = 0

    def jobs(self, limit: int = 10) -> list[dict[str, Any]]:
        last = self.done[-1]
        if last["gate_verdict"] == "insufficient_data" and len(self.done) < len(self.verdicts):
            self.polls += 1
            if self.polls % 2 == 0:
                self.done.append(self._job("drift"))
        return super().jobs(limit)


class BusyDesk:
    """Technicians who never stop: each look at the tally finds twice the annotations of the last."""

    def __init__(self) -> None:
        self.seen = 1000

    @property
    def tally(self) -> SimpleNamespace:
        self.seen *= 2
        return SimpleNamespace(annotations=self.seen)


def story(operator: ScriptedOperator) -> Story:
    desk = BusyDesk()  # labels never lack
    profile = PROFILES["fast"]
    rig = SimpleNamespace(settings=SimpleNamespace(training=SimpleNamespace(triggers=TriggerPolicy())))
    return Story(profile, rig, operator, desk, {}, [], SimpleNamespace(), Timeline(),  # type: ignore[arg-type]
                 workdir=SimpleNamespace())  # type: ignore[arg-type]


def test_a_blocked_candidate_is_followed_by_a_retrain_on_more_labels() -> None:
    operator = ScriptedOperator(["fail", "pass"])
    s = story(operator)
    s._retrain()
    assert (s.outcome.candidate, s.outcome.blocked) == ("v3", ["v2"])
    assert len(operator.requests) == 1 and "v2 was blocked by the gate" in operator.requests[0]
    kinds = [e.kind for e in s.timeline.events]
    assert kinds.count("gate") == 2 and "gate_blocked" in kinds


def test_the_story_gives_up_after_the_last_attempt() -> None:
    operator = ScriptedOperator(["fail"] * RETRAIN_ATTEMPTS)
    with pytest.raises(StoryError, match=f"the gate did not pass v{RETRAIN_ATTEMPTS + 1}"):
        story(operator)._retrain()
    assert len(operator.requests) == RETRAIN_ATTEMPTS - 1


def test_a_candidate_the_gate_could_not_judge_is_retried_by_the_hub_not_the_operator() -> None:
    operator = HubRetries(["insufficient_data", "fail", "pass"])
    s = story(operator)
    s._retrain()
    assert (s.outcome.candidate, s.outcome.blocked) == ("v4", ["v2", "v3"])
    assert [j["trigger"] for j in operator.done] == ["drift", "drift", "manual"]  # the hub, then the operator
    assert len(operator.requests) == 1 and "v3 was blocked" in operator.requests[0]
    blocked = [e.message for e in s.timeline.events if e.kind == "gate_blocked"]
    assert "the hub retrains again" in blocked[0] and "the operator retrains again" in blocked[1]
