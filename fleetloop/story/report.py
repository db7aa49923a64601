"""The story's self-contained HTML report: summary, timeline, and three plots as inline PNGs (no external URL).

1. recall and false-alarm rate over time, the loop (whatever served each window) against a frozen v1;
2. the fleet's per-feature drift (PSI against the serving version's reference) over time;
3. the rollout timeline: which version every device served when, with the rollout events.

The first plot is also written as a PNG next to the report (``<report>-accuracy.png``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fleetloop.fleet.logs import DeviceLog
from fleetloop.story import words
from fleetloop.story.metrics import Accuracy
from fleetloop.story.timeline import Event, Timeline

__all__ = ["DriftPoint", "drift_series", "write_report"]

MARKED = {"drift_injected": ("injection", "#d62728"), "drift_detected": ("drift detected", "#9467bd"),
          "retrain_started": ("retrain", "#8c564b"), "rollout_started": ("rollout", "#1f77b4"),
          "recovered": ("recovered", "#2ca02c"), "rollback": ("rollback", "#ff7f0e")}


@dataclass(frozen=True)
class DriftPoint:
    """One fleet drift report: when (s since the origin), against which version, PSI per feature, verdict."""

    t: float
    version: str
    psi: Mapping[str, float]
    verdict: str


def drift_series(reports: Sequence[Any], origin: float) -> list[DriftPoint]:
    """Fleet reports (hub store rows) as points, oldest first; at one time, the version with the most windows."""
    best: dict[float, Any] = {}
    for r in reports:
        if not r.scope.startswith("fleet@") or r.verdict == "insufficient_data":  # too few windows to read
            continue
        key = round(r.ts, 1)
        if key not in best or r.report.get("n_current", 0) > best[key].report.get("n_current", 0):
            best[key] = r
    return [DriftPoint(r.ts - origin, r.scope.split("@", 1)[1],
                       {f["name"]: float(f["psi"]) for f in r.report.get("features", []) if f.get("psi") is not None},
                       r.verdict)
            for _, r in sorted(best.items())]


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _mark_events(ax: Any, events: Sequence[Event], *, labels: bool) -> None:
    used: set[str] = set()
    for e in events:
        if e.kind not in MARKED:
            continue
        name, color = MARKED[e.kind]
        ax.axvline(e.t, color=color, lw=1, ls="--", alpha=0.8, label=name if labels and name not in used else None)
        used.add(name)


def accuracy_png(acc: Accuracy, timeline: Timeline) -> bytes:
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    series = [("drifted site", acc.drifted_served, acc.drifted_frozen, 2.2, 1.0),
              ("whole fleet", acc.served, acc.frozen, 1.2, 0.45)]
    for name, served, frozen, lw, alpha in series:
        if not served:
            continue
        for ax, key in ((top, "recall"), (bottom, "far")):
            ax.plot(acc.t, [getattr(r, key) for r in served], "o-", color="#2ca02c", lw=lw, ms=3, alpha=alpha,
                    label=f"{name}: with the loop (served model)")
            ax.plot(acc.t, [getattr(r, key) for r in frozen], "s--", color="#7f7f7f", lw=lw, ms=3, alpha=alpha,
                    label=f"{name}: frozen v1")
    top.set_ylabel("recall (failures caught)")
    top.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("false-alarm rate")
    bottom.set_xlabel(f"seconds since the agents started (buckets of {acc.bucket_s:g} s; ground truth of every window)")
    for ax in (top, bottom):
        _mark_events(ax, timeline.events, labels=ax is top)
        ax.grid(alpha=0.3)
    injected, recovered = timeline.first("drift_injected"), timeline.first("recovered")
    if injected is not None:
        for ax in (top, bottom):
            ax.axvspan(injected.t, recovered.t if recovered else acc.t[-1], color="#d62728", alpha=0.06)
    top.set_title("Recall and false alarms over time: the feedback loop vs a frozen model")
    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=4, bbox_to_anchor=(0.5, -0.06), frameon=False)
    return _figure_png(fig)


def drift_png(points: Sequence[DriftPoint], timeline: Timeline, threshold: float, top_n: int = 6) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    peak: dict[str, float] = {}
    for p in points:
        for name, v in p.psi.items():
            peak[name] = max(peak.get(name, 0.0), v)
    floor = 0.01  # PSI below this reads as "none" on a log axis
    for name in sorted(peak, key=lambda n: -peak[n])[:top_n]:
        ax.plot([p.t for p in points], [max(p.psi.get(name, math.nan), floor) for p in points], lw=1.5, label=name)
    ax.axhline(threshold, color="black", lw=1, ls=":", label=f"drift threshold (PSI {threshold:g})")
    ax.set_yscale("log")
    switches = [(p.t, p.version) for i, p in enumerate(points) if i and p.version != points[i - 1].version]
    for t, version in switches:
        ax.annotate(f"→ {version}'s reference", (t, threshold * 3), fontsize=8)
    _mark_events(ax, timeline.events, labels=True)
    ax.set_xlabel("seconds since the agents started")
    ax.set_ylabel("fleet PSI vs the serving version's reference")
    ax.set_title(f"Per-feature drift of the fleet (the {min(top_n, len(peak))} features that drifted most)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    return _figure_png(fig)


def rollout_png(logs: Sequence[DeviceLog], timeline: Timeline, drifted: Sequence[str]) -> bytes:
    import matplotlib.pyplot as plt

    first_seen: dict[str, float] = {}
    for log in logs:
        for v, t in zip(log.model_version, log.ts, strict=True):
            first_seen[str(v)] = min(first_seen.get(str(v), math.inf), float(t))
    versions = sorted(first_seen, key=lambda v: first_seen[v])
    promoted = {str(e.data.get("version")) for e in timeline.events if e.kind == "recovered"}
    failed = {str(e.data.get("version")) for e in timeline.events if e.kind == "rollback"}
    others = iter(["#1f77b4", "#9467bd", "#8c564b", "#e377c2"] * 4)
    colors = {v: "#7f7f7f" if i == 0 else "#2ca02c" if v in promoted else "#d62728" if v in failed else next(others)
              for i, v in enumerate(versions)}
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(logs) + 1.8))
    min_width = 0.005 * (max((float(log.ts[-1]) for log in logs if len(log)), default=1.0) - timeline.origin)
    for row, log in enumerate(logs):
        if not len(log):
            continue
        t = log.ts - timeline.origin
        change = np.flatnonzero(log.model_version[1:] != log.model_version[:-1]) + 1
        starts, ends = np.r_[0, change], np.r_[change, len(log)]
        for s, e in zip(starts, ends, strict=True):
            v = str(log.model_version[s])
            end = t[e] if e < len(log) else t[-1]
            blip = end - t[s] < min_width  # a few windows: drawn wider, and on top, so that it stays visible
            ax.barh(row, max(end - t[s], min_width), left=t[s], color=colors[v], height=0.7, zorder=3 if blip else 2)
    _mark_rollbacks(ax, timeline, [log.device_id for log in logs], min_width)
    ax.set_yticks(range(len(logs)))
    ax.set_yticklabels([f"{log.device_id}{' (drifted)' if log.device_id in drifted else ''}" for log in logs],
                       fontsize=8)
    ax.invert_yaxis()
    _mark_events(ax, timeline.events, labels=True)
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=v) for v, c in colors.items()] + ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel("seconds since the agents started")
    ax.set_title("Rollout timeline: the model version each device served")
    return _figure_png(fig)


def _mark_rollbacks(ax: Any, timeline: Timeline, devices: Sequence[str], min_width: float) -> None:
    """A rolled-back version on the devices that got it, from its rollout to its rollback, hatched and named: a
    canary that failed in a second serves too few windows to see as a bar."""
    for back in timeline.all("rollback"):
        version = back.data.get("version")
        started = next((e for e in reversed(timeline.all("rollout_started"))
                        if e.data.get("version") == version and e.at <= back.at), None)
        if started is None:
            continue
        for device in started.data.get("devices") or []:
            if device not in devices:
                continue
            row = devices.index(device)
            ax.barh(row, max(back.t - started.t, min_width), left=started.t, height=0.9, fill=False, hatch="////",
                    edgecolor="#d62728", lw=1, zorder=4)
            ax.annotate(f"{version} failed its canary: rolled back", (back.t, row), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=8, color="#d62728", zorder=5,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#d62728", "alpha": 0.9})


def write_report(path: Path, *, summary: Mapping[str, Any], timeline: Timeline, accuracy: Accuracy | None,
                 drift: Sequence[DriftPoint], drift_threshold: float, logs: Sequence[DeviceLog],
                 drifted: Sequence[str]) -> Path:
    """Write the HTML report at `path` and the accuracy plot next to it; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = path.with_name(path.stem + "-accuracy.png")
    images: list[tuple[str, bytes]] = []
    if accuracy is not None and len(accuracy.t):
        main = accuracy_png(accuracy, timeline)
        png.write_bytes(main)
        images.append(("Recall and false alarms over time", main))
    if drift:
        images.append(("Per-feature drift", drift_png(drift, timeline, drift_threshold)))
    if logs:
        images.append(("Rollout timeline", rollout_png(logs, timeline, drifted)))
    path.write_text(_html(summary, timeline, accuracy, images))
    return png


def _html(summary: Mapping[str, Any], timeline: Timeline, accuracy: Accuracy | None,
          images: Sequence[tuple[str, bytes]]) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in summary.items()
                   if k not in ("timeline", "accuracy"))
    six = "".join(f"<tr><th>{e(what)}</th><td>{e(value)}</td></tr>" for what, value in words.numbers(summary))
    events = "".join(f"<tr><td>{'setup' if ev.kind == 'setup' else f'{ev.t:.1f}'}</td><td>{e(ev.message)}</td></tr>"
                     for ev in timeline.events)
    periods = ""
    if accuracy is not None:
        for scope, table in (("whole fleet", accuracy.periods), ("drifted devices", accuracy.drifted_periods)):
            for period, by_model in table.items():
                for model, r in by_model.items():
                    periods += (f"<tr><td>{e(scope)}</td><td>{e(period)}</td><td>{e(model)}</td>"
                                f"<td>{_fmt(r.recall)}</td><td>{_fmt(r.far)}</td><td>{r.n_pos}</td><td>{r.n_neg}</td></tr>")
    data = json.dumps(summary, default=str).replace("</", "<\\/")  # a "</script>" inside must not end the block
    figures = "".join(f"<h2>{e(title)}</h2><img alt='{e(title)}' src='data:image/png;base64,"
                      f"{base64.b64encode(data).decode()}'>" for title, data in images)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetloop demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;
font-size:13px;vertical-align:top}}img{{max-width:100%}}.headline{{font-size:1.2em}}</style></head><body>
<h1>fleetloop demo: drift → labels → retrain → gate → canary → fleet</h1>
<p>A simulated fleet, a real mosquitto, the real hub and agents, on a compressed clock. Recall and false alarms
are measured on every window the agents scored, against the simulator's ground truth.</p>
<p class="headline" id="headline">{e(words.headline(summary))}</p>
<table id="numbers">{six}</table>
<details><summary>Every number of the run (the summary's raw keys)</summary><table>{rows}</table></details>
<h2>Recall and false alarms by period</h2>
<table><tr><th>devices</th><th>period</th><th>model</th><th>recall</th><th>false-alarm rate</th><th>failing windows</th>
<th>healthy windows</th></tr>{periods}</table>
{figures}
<h2>Timeline</h2>
<p>Seconds since the agents started, in the order things happened (an event the story learned of later is listed
when it happened).</p>
<table id="timeline"><tr><th>t (s)</th><th>what happened</th></tr>{events}</table>
<script type="application/json" id="summary">{data}</script>
</body></html>
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4g}"
    if v is None:
        return "-"
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)
