"""The HTML report is self-contained: inline PNG plots, no external URL, the summary as JSON; the PNG beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from fleetloop.fleet.logs import DeviceLog
from fleetloop.story.metrics import ScoredWindows, accuracy
from fleetloop.story.report import drift_series, write_report
from fleetloop.story.timeline import Timeline

T0 = 1_700_000_000.0


def synthetic(n: int = 600, seed: int = 0) -> tuple[ScoredWindows, list[DeviceLog]]:
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.uniform(0, 60, n))
    truth = rng.random(n) < 0.15
    versions = np.where(ts < T0 + 35, "v1", "v2")
    served = truth & (rng.random(n) < np.where(versions == "v2", 0.8, 0.5))
    frozen = truth & (rng.random(n) < 0.5)
    devices = np.array([f"dev-{i % 3}" for i in range(n)])
    w = ScoredWindows(devices, ts, versions, truth, served, frozen)
    logs = [DeviceLog(d, ts[devices == d], ts[devices == d] - 0.1, versions[devices == d],
                      np.zeros((int((devices == d).sum()), 2), np.float32), np.zeros(int((devices == d).sum())),
                      served[devices == d]) for d in ("dev-0", "dev-1", "dev-2")]
    return w, logs


def test_the_report_is_self_contained_and_the_accuracy_plot_sits_next_to_it(tmp_path: Path) -> None:
    w, logs = synthetic()
    tl = Timeline(T0)
    tl.add("drift_injected", "recalibrated </script> badly", at=T0 + 20)
    tl.add("drift_detected", "fleet drift", at=T0 + 23)
    tl.add("rollout_started", "canary", at=T0 + 33)
    tl.add("recovered", "recovered", at=T0 + 36)
    tl.add("rollback", "nan-1 rolled back", at=T0 + 50)
    acc = accuracy(w, origin=T0, bucket_s=5.0, injected_at=T0 + 20, recovered_at=T0 + 36, promoted="v2",
                   drifted=["dev-0"])
    reports = [SimpleNamespace(ts=T0 + t, scope=f"fleet@{'v1' if t < 36 else 'v2'}", verdict="drift" if t > 22 else "",
                               report={"n_current": 100, "features": [{"name": "vibration.mean", "psi": 0.1 + t / 10},
                                                                      {"name": "flow.max", "psi": 0.05}]})
               for t in range(0, 60, 2)]
    reports.append(SimpleNamespace(ts=T0 + 4, scope="device:dev-0@v1", verdict="drift", report={"features": []}))
    points = drift_series(reports, T0)
    assert len(points) == 30 and points[0].version == "v1" and points[-1].version == "v2"
    summary = {"drift_detected": True, "recall_after": 0.8, "note": "</script><script>alert(1)</script>"}

    report = tmp_path / "out" / "story.html"
    png = write_report(report, summary=summary, timeline=tl, accuracy=acc, drift=points, drift_threshold=0.5,
                       logs=logs, drifted=["dev-0"])

    assert png == tmp_path / "out" / "story-accuracy.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.read_text()
    assert len(re.findall(r"src='data:image/png;base64,", text)) == 3
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", text)  # nothing fetched from anywhere
    assert "<script src" not in text and "recalibrated &lt;/script&gt; badly" in text
    block = re.search(r'<script type="application/json" id="summary">(.*?)</script>', text, re.S)
    assert block is not None and json.loads(block.group(1).replace("<\\/", "</")) == summary


def test_the_report_opens_with_a_headline_and_six_numbers_and_keeps_the_raw_keys_folded(tmp_path: Path) -> None:
    w, logs = synthetic()
    tl = Timeline(T0 - 10)
    tl.add("setup", "hub API on http://127.0.0.1:1", at=T0 - 5)
    tl.rebase(T0)  # the agents start: the story's clock starts
    tl.add("rollout_started", "operator rolls nan-1 out: canary dev-2", at=T0 + 40, version="nan-1",
           devices=["dev-2"])
    tl.add("rollback", "nan-1: rolled_back", at=T0 + 41, version="nan-1")
    tl.add("gate", "v5: gate fail (learned late)", at=T0 + 30)  # recorded after the fact
    acc = accuracy(w, origin=T0, bucket_s=5.0, injected_at=T0 + 20, recovered_at=T0 + 36, promoted="v2",
                   drifted=["dev-0"])
    summary = {"drift_detected": True, "drift_detected_after_s": 3.0, "drift_to_recovered_s": 16.0,
               "drift_site": "site-a", "promoted_version": "v2", "accuracy": acc.to_json(), "far_after": 0.01}
    report = tmp_path / "story.html"
    write_report(report, summary=summary, timeline=tl, accuracy=acc, drift=[], drift_threshold=0.5, logs=logs,
                 drifted=["dev-0"])
    text = report.read_text()
    head = re.search(r'<p class="headline" id="headline">(.*?)</p>', text, re.S)
    assert head is not None and head.group(1).startswith("A bad sensor recalibration on site-a was detected 3.0 s")
    assert text.index('id="headline"') < text.index('id="numbers"') < text.index("<details>")
    assert len(re.findall(r"<tr><th>", text.split('id="numbers">')[1].split("</table>")[0])) == 6
    assert "<th>far_after</th>" in text.split("<details>")[1]  # the raw keys, folded below
    timeline = text.split('id="timeline">')[1].split("</table>")[0]
    stamps = re.findall(r"<tr><td>([^<]+)</td>", timeline)
    assert stamps == ["setup", "30.0", "40.0", "41.0"]  # in the order things happened, on one clock
    assert "FAR" not in text
