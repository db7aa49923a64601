"""`fleetloop demo --fast --scenario new-failure-mode` end to end: a real mosquitto, the hub in production mode and
its API, 4 agent processes, simulated technicians. From reading 3,600 the 3 machines of site-a fail in a way v1 never
saw (`sim.drift.NewFailureMode`: healthy operation reads exactly as before). No fleet drift verdict fires; the
technicians' labels show v1's recall dropping (``performance_degraded``), the hub retrains on that (trigger
``performance``), the gate passes the candidate, the operator rolls it out, and it catches the new failures v1
misses on the very same windows.

Cost: one fast story without the faulty-candidate phases: the story itself ~60 s (healthy 9 s, labels until the
retrain ~12 s, the retrain 10-35 s, rollout ~8 s, the fixed fleet 16 s), plus building the fast initial model (~10 s)
and the report; measured 73 s wall at load average 20-30 with the final settings (93 s at 9-13 and 140-150 s at
17-25 in earlier runs) on this shared 2-core machine. It could not be measured on a quiet machine here.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_demo import REPO, first, kinds, leftovers, summary_of

log = logging.getLogger(__name__)
RECALL_MARGIN = 0.1  # the served fix's recall over a frozen v1's on the affected devices' windows after the fix
# (measured +0.07 to +0.32 over 8 s after the fix, README "A new failure mode"; the scenario now watches 16 s, and the
# offline recipe gains ~0.3 over 40,000 readings: bench/new_failure_mode.py)


@pytest.mark.slow
def test_a_new_failure_mode_is_noticed_from_labels_and_fixed(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fleetloop.cli", "demo", "--fast", "--scenario", "new-failure-mode",
                           "--workdir", str(tmp_path), "--json"], capture_output=True, text=True, cwd=REPO,
                          timeout=400, check=False)
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-5000:]
    s = summary_of(done.stdout)
    after = s["accuracy"]["drifted_devices"]["after_fix"]
    log.info("new-failure-mode story: %.1f s wall; trigger %s; drift events before the retrain %s; recall on the "
             "affected devices after the fix %s (frozen v1 %s)", wall, s["retrain_trigger"], s["drift_events"],
             after["served"], after["frozen"])
    assert s["failed"] is None and s["scenario"] == "new-failure-mode"
    # no drift verdict at the scope that asks for a retrain, while v1 served the fleet and missed the new failures
    assert s["drift_events"]["fleet"] == 0, s["drift_events"]
    # the labels told: v1's realized recall dropped, recorded as performance_degraded, and the retrain is on that
    perf = s["performance_degraded"]
    assert perf["model_version"] == "v1" and perf["figures"]["recall"]["verdict"] == "degraded", perf
    assert perf["ts"] >= first(s, "drift_injected")["at"] and perf["scope"] in ("fleet", "cohort:site-a"), perf
    assert s["retrain_trigger"] == "performance"
    assert s["promoted_version"] == s["candidate"] and s["gate"]["verdict"] == "pass"
    order = ["drift_injected", "reference_taken", "performance_degraded", "retrain_started", "gate",
             "rollout_completed", "recovered", "drift_verdicts"]
    seen = kinds(s)
    # the story in order (first of each kind); a candidate the gate kept back is retrained again before the one that
    # passed (the story's RETRAIN_ATTEMPTS): each attempt is a retrain, its gate, and a block but for the last
    assert list(dict.fromkeys(k for k in seen if k in order)) == order, seen
    assert seen.count("retrain_started") == seen.count("gate") == seen.count("gate_blocked") + 1, seen
    assert first(s, "recovered")["data"]["version"] == s["candidate"]
    # v1 misses the new failures; the fix catches them on the very same windows
    before = s["accuracy"]["drifted_devices"]["before_fix"]["served"]
    healthy = s["accuracy"]["drifted_devices"]["healthy"]["served"]
    assert before["recall"] < healthy["recall"] - 0.15, (before, healthy)
    served, frozen = after["served"], after["frozen"]
    assert served["n_pos"] >= 50, after
    assert served["recall"] >= frozen["recall"] + RECALL_MARGIN, after
    assert s["drifted_devices"] == ["dev-0", "dev-2", "dev-3"] and s["devices"] == 4
    assert s["agents_ok"] and s["hub_job_failures"] == 0 and "Traceback" not in done.stderr
    assert done.stdout.startswith("A new failure mode appeared on site-a: no fleet drift verdict fired")
    assert leftovers(tmp_path) == []
