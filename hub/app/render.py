"""What the operator CLI prints: the hub API's JSON as aligned tables and short lines, times in ISO 8601 (UTC).

Pure functions from decoded answers to text; `hub.app.commands` prints them (tables: `infra.cliformat.table`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from infra.cliformat import iso, table

SHORT_ID = 8  # fewest characters of a rollout id shown in lists (any unique prefix is accepted back)
TOP_FEATURES = 3


def _num(value: object, digits: int = 3) -> str:
    if value is None:
        return "inf"  # a non-finite PSI is stored as None: a huge shift
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


# --- performance ----------------------------------------------------------------------------------------------
def performance_table(body: Mapping[str, Any]) -> str:
    """Per version and scope: the label-free estimate (F1, recall, false alarms), the realized figures from labels,
    the estimate's F1 error and the sequential test's verdict."""
    realized = {(f["version"], f["scope"]): f for f in body.get("figures", [])}
    keys = sorted(set(realized) | {(e["version"], e["scope"]) for e in body.get("estimates", [])})
    estimates = {(e["version"], e["scope"]): e for e in body.get("estimates", [])}

    def pct(d: Mapping[str, Any] | None, key: str) -> str | None:
        v = None if d is None else d.get(key)
        return None if v is None else f"{v:.3f}"

    rows = []
    for key in keys:
        e, f = estimates.get(key, {}), realized.get(key)
        est, real, err = e.get("estimated"), e.get("realized"), e.get("error")
        if real is None and f is not None:
            real = {"recall": f["recall"]["observed"], "false_alarm_rate": f["false_alarm_rate"]["observed"]}
        rows.append([*key, e.get("status", "-"), e.get("samples"), pct(est, "f1"), pct(est, "recall"),
                     pct(est, "false_alarm_rate"), pct(real, "f1"), pct(real, "recall"), pct(real, "false_alarm_rate"),
                     None if err is None or err.get("f1") is None else f"{err['f1']:+.3f}",
                     None if f is None else f["verdict"]])
    if not rows:
        return "no performance figures yet (estimates need random samples from a calibrated version; realized " \
               "figures need validated labels)"
    head = ["VERSION", "SCOPE", "ESTIMATE", "SAMPLES", "EST_F1", "EST_RECALL", "EST_FAR", "F1", "RECALL", "FAR",
            "F1_ERROR", "VERDICT"]
    return table(head, rows)


def regimes_text(body: Mapping[str, Any]) -> str:
    """The active version's regimes (centroid, readings fitted on, field readings nearest, of them far), the share of
    field readings far from every active centroid, and the regimes the field's readings alone give."""
    field, settings = body["field"], ", ".join(body["settings"])

    def at(centroid: Sequence[float]) -> str:
        return "(" + ", ".join(f"{v:.4g}" for v in centroid) + ")"

    rows = [[i, at(r["centroid"]), r["fitted_readings"], r["field_readings"], r["field_far"]]
            for i, r in enumerate(body["active"])]
    far = field["far_share"]
    lines = [f"active {body['version']}: {len(rows)} regime(s) over {settings}",
             table(["REGIME", "CENTROID", "FITTED", "FIELD", "FIELD_FAR"], rows),
             f"field: {field['readings']} readings in {field['windows']} raw windows from {field['devices']} devices; "
             + ("no raw windows with the window's sensors yet (devices upload them when the hub asks)" if far is None
                else f"{far:.1%} far from every active regime (beyond {body['far_spreads']:g}x its spread)")]
    if body.get("found"):
        lines.append(f"the field alone gives {len(body['found'])} regime(s): "
                     + "; ".join(f"{at(r['centroid'])} {r['field_readings']} readings" for r in body["found"]))
    return "\n".join(lines)


# --- devices and dead letters ---------------------------------------------------------------------------------
def devices_table(devices: Sequence[Mapping[str, Any]]) -> str:
    rows = [[d["device_id"], "online" if d.get("online") else "offline", d.get("model_version"),
             d.get("shadow_version"), d.get("cohort"), iso(d.get("last_seen")), d.get("agent_version")]
            for d in devices]
    return table(["DEVICE", "PRESENCE", "MODEL", "SHADOW", "COHORT", "LAST SEEN", "AGENT"], rows)


def dead_letters_text(counts: Mapping[str, int], rows: Sequence[Mapping[str, Any]]) -> str:
    head = "by reason: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    listed = table(["TIME", "REASON", "DEVICE", "TOPIC", "DETAIL"],
                   [[iso(r["ts"]), r["reason"], r.get("device_id"), r["topic"], _clip(r.get("detail"), 80)]
                    for r in rows])
    return head + ("\n" + listed if rows else "")


def _clip(text: object, n: int) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


# --- incidents ------------------------------------------------------------------------------------------------
def incidents_table(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(["ID", "DEVICE", "SITE", "STATE", "FIRST ALARM", "LAST ALARM", "WINDOWS", "MAX SCORE", "WHO",
                  "VERDICT"],
                 [[r["id"], r["device_id"], r.get("site"), r["state"], iso(r["start_ts"]), iso(r["end_ts"]),
                   r["windows"], _num(r.get("max_score")), r.get("resolved_by") or r.get("acknowledged_by"),
                   r.get("verdict")] for r in rows])


def batch_text(items: Sequence[Mapping[str, Any]]) -> str:
    """A batch resolve: one line per incident."""
    return "\n".join(f"{i['incident_id']}: " + ("resolved" if i["status"] == 200 else f"{i['status']} {i['detail']}")
                     for i in items)


# --- drift ----------------------------------------------------------------------------------------------------
def latest_per_scope(reports: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest report of each scope (the API lists newest first), fleet scopes first."""
    seen: dict[str, Mapping[str, Any]] = {}
    for r in reports:
        seen.setdefault(r["scope"], r)
    return sorted(seen.values(), key=lambda r: (not str(r["scope"]).startswith("fleet"), str(r["scope"])))


def drift_table(reports: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for r in reports:
        body = r.get("report") or {}
        rows.append([r["scope"], r["verdict"], iso(r.get("ts")), body.get("n_current"), _top_drifted(body)])
    return table(["SCOPE", "VERDICT", "TIME", "WINDOWS", "TOP DRIFTED FEATURES (PSI)"], rows)


def _top_drifted(report: Mapping[str, Any]) -> str:
    features = report.get("features") or []

    def psi(f: Mapping[str, Any]) -> float:
        value = f.get("psi")
        return math.inf if value is None else float(value)

    drifted = sorted((f for f in features if f.get("drifted")), key=psi, reverse=True)
    cells = [f"{f['name']} {_num(f.get('psi'))}" for f in drifted[:TOP_FEATURES]]
    if len(drifted) > TOP_FEATURES:
        cells.append(f"+{len(drifted) - TOP_FEATURES} more")
    score = report.get("score")
    if isinstance(score, Mapping) and score.get("drifted"):
        cells.append(f"score {_num(score.get('psi'))}")
    if not cells and features:
        top = max(features, key=psi)
        return f"(largest: {top['name']} {_num(top.get('psi'))})"
    return ", ".join(cells)


# --- models and the gate --------------------------------------------------------------------------------------
def gate_verdict(model: Mapping[str, Any]) -> str | None:
    """A version's gate verdict from whichever the API gives: ``gate_verdict``, or the stored ``gate`` record."""
    if model.get("gate_verdict"):
        return str(model["gate_verdict"])
    gate = model.get("gate")
    return str(gate.get("verdict")) if isinstance(gate, Mapping) and gate.get("verdict") else None


def models_table(models: Sequence[Mapping[str, Any]]) -> str:
    rows = [[m["version"], m["status"], gate_verdict(m) or "-", m.get("parent_version"), iso(m.get("created_ts")),
             m.get("created_by"), _clip(m.get("reason"), 60)] for m in models]
    return table(["VERSION", "STATUS", "GATE", "PARENT", "CREATED", "BY", "REASON"], rows)


def model_text(model: Mapping[str, Any]) -> str:
    lines = [f"{model['version']}  {model['status']}  parent {model.get('parent_version') or '-'}  created "
             f"{iso(model.get('created_ts'))} by {model.get('created_by')}: {model.get('reason')}"]
    gate = model.get("gate")
    lines += gate_lines(gate) if isinstance(gate, Mapping) else ["gate: none recorded"]
    audit = model.get("audit") or []
    if audit:
        lines.append("audit:")
        lines += ["  " + line for line in table(
            ["TIME", "ACTOR", "ACTION", "FROM", "TO", "REASON"],
            [[iso(a["ts"]), a["actor"], a["action"], a.get("from_status"), a.get("to_status"), a["reason"]]
             for a in audit]).splitlines()]
    return "\n".join(lines)


def gate_lines(gate: Mapping[str, Any]) -> list[str]:
    """A stored gate record in words: the verdict, how its intervals were made, then each check and its numbers."""
    head = f"gate: {gate.get('verdict')}"
    boot = gate.get("bootstrap")
    if boot:  # records made before the block bootstrap have none
        head += (f" (paired block bootstrap, {boot['resamples']} resamples, seed {boot['seed']}: "
                 f"{boot['positive_blocks']} positive and {boot['negative_blocks']} negative of {boot['n_blocks']} "
                 f"blocks; a metric fails beyond its tolerance when the {1 - boot['alpha']:.0%} lower bound is > 0)")
    floor = gate.get("far_floor")
    if floor:  # the incumbent had drifted: false alarms measured from its rate before the drift when higher
        rates = [("overall", floor.get("overall")), *sorted((floor.get("cohorts") or {}).items())]
        head += ("\n  false alarms measured from the incumbent's rate before its drift (where higher): " + ", ".join(
            f"{k} {v:.4f}" for k, v in rates if v is not None))
    trade = gate.get("trade")  # records made before the named recall trade have none
    traded = [f"  recall trade {trade.get('recall_trade')!r}: {trade.get('reason')}"] if trade else []
    return [head, *traded] + [f"  {c['name']:<36} {'ok' if c['passed'] else 'FAIL':<4} {c.get('detail', '')}"
                     for c in gate.get("checks", [])]


def retrain_text(job: Mapping[str, Any], model: Mapping[str, Any] | None) -> str:
    """A finished training job in a few lines: outcome, version, verdict, and the gate's checks."""
    head = f"retrain {job['id']}: {job['status']}"
    if job.get("result_version"):
        head += f", version {job['result_version']}"
    if job.get("gate_verdict"):
        head += f", gate {job['gate_verdict']}"
    lines = [head]
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    gate = model.get("gate") if model else None
    if isinstance(gate, Mapping):
        lines += gate_lines(gate)
        lines.append(f"  the version is {model['status']}" if model else "")
    return "\n".join(line for line in lines if line)


# --- rollouts -------------------------------------------------------------------------------------------------
def decision_text(decision: Mapping[str, Any] | None) -> str:
    """The rollout's latest decision in one line: what, why, when."""
    if not decision:
        return "-"
    return f"{decision.get('kind')}: {decision.get('reason')} ({iso(decision.get('at'))})"


def short_ids(ids: Sequence[str], min_len: int = SHORT_ID) -> dict[str, str]:
    """Each id's shortest prefix (at least `min_len` characters) that no other id starts with.

    Rollout ids are ``ro-`` + a UUIDv7, whose first characters are the time: two rollouts started the same
    minute share a dozen of them, so a fixed width would not tell them apart.

    >>> short_ids(["ro-0197aa-1", "ro-0197aa-2", "ro-0198bb-1"], min_len=4)
    {'ro-0197aa-1': 'ro-0197aa-1', 'ro-0197aa-2': 'ro-0197aa-2', 'ro-0198bb-1': 'ro-0198'}
    """
    ordered = sorted(set(ids))

    def common(a: str, b: str) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    out = {}
    for i, ident in enumerate(ordered):
        shared = max([common(ident, ordered[j]) for j in (i - 1, i + 1) if 0 <= j < len(ordered)], default=0)
        out[ident] = ident[: max(min_len, shared + 1)]
    return out


def rollouts_table(rollouts: Sequence[Mapping[str, Any]], all_ids: Sequence[str] = ()) -> str:
    """Rollouts with their shortest unique id prefixes among `all_ids` (default: those listed)."""
    short = short_ids([*all_ids, *(r["id"] for r in rollouts)])
    rows = [[short[r["id"]], r["candidate"], r["incumbent"], r["status"] + (" (paused)" if r.get("paused") else ""),
             r["stage"], iso(r.get("updated_ts")), _clip(decision_text(r.get("decision")), 100)] for r in rollouts]
    return table(["ID", "CANDIDATE", "OVER", "STATUS", "STAGE", "UPDATED", "DECISION"], rows)


def estimate_text(e: Mapping[str, Any]) -> str:
    """A decision's label-free estimate of the candidate on the stage's traffic, against its gate-time figures."""
    if e.get("status") != "ok":
        return f"none ({str(e.get('status')).replace('_', ' ')}: {e.get('reason')})"

    def fig(v: object) -> str:
        return "-" if v is None else _num(v)

    return (f"recall {fig(e.get('recall'))} (gate {fig(e.get('gate_recall'))}), F1 {fig(e.get('f1'))}, "
            f"precision {fig(e.get('precision'))}, false-alarm rate {fig(e.get('false_alarm_rate'))} "
            f"(gate {fig(e.get('gate_false_alarm_rate'))}), no labels: {e.get('reason')}")


def rollout_text(r: Mapping[str, Any]) -> str:
    lines = [f"rollout {r['id']}: {r['candidate']} over {r['incumbent']}, {r['status']}, stage {r['stage']}"
             + ("  (paused)" if r.get("paused") else ""),
             f"  started {iso(r.get('created_ts'))} by {r.get('actor')}: {r.get('reason')}",
             f"  decision  {decision_text(r.get('decision'))}"]
    decision = r.get("decision") or {}
    yardstick = decision.get("yardstick")
    if yardstick:
        lines.append(f"  judged against the {yardstick.get('basis')}: {yardstick.get('reason')}")
        expect = yardstick.get("expectation") or {}
        if expect.get("source") in ("stage", "fleet"):  # measured on the stage's traffic: whose, and when
            lines.append(f"  expected  anomaly rate {_num(expect.get('anomaly_rate'))} on {expect.get('vectors')} "
                         f"vectors from {', '.join(expect.get('devices') or [])}, received {iso(expect.get('since'))}"
                         f" to {iso(expect.get('until'))} (windows of data time {iso(expect.get('data_from'))} to "
                         f"{iso(expect.get('data_to'))})")
    estimate = decision.get("estimate")
    if estimate:
        lines.append("  estimate  " + estimate_text(estimate))
    numbers = decision.get("numbers") or {}
    if numbers:
        lines.append("  numbers   " + "  ".join(f"{k}={_num(v)}" for k, v in sorted(numbers.items())))
    lines.append("  limits    " + "  ".join(f"{k}={v:g}" for k, v in (r.get("limits") or {}).items()))
    for s in r.get("stages") or []:
        lines.append(f"  stage {s['name']:<7} {s['mode']:<6} {len(s['devices'])} device(s): {', '.join(s['devices'])}")
    history = r.get("history") or []
    if history:
        lines.append("  history:")
        lines += ["    " + line for line in table(
            ["TIME", "ACTOR", "ACTION", "STAGE", "REASON"],
            [[iso(t["at"]), t["actor"], t["action"], f"{t['from_stage']} -> {t['to_stage']}", t["reason"]]
             for t in history]).splitlines()]
    return "\n".join(lines)


# --- anything else: a summary the CLI does not know the shape of ----------------------------------------------
def mapping_lines(data: Mapping[str, Any], indent: str = "") -> list[str]:
    """Nested mappings as ``key: value`` lines (times under keys ending in ``ts``/``at`` in ISO)."""
    lines = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines.append(f"{indent}{key}:")
            lines += mapping_lines(value, indent + "  ")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{indent}{key}: {len(value)}")
            for item in value[:20]:
                lines.append(f"{indent}  - " + ", ".join(f"{k}={_scalar(k, v)}" for k, v in item.items()))
        else:
            lines.append(f"{indent}{key}: {_scalar(key, value)}")
    return lines


def _scalar(key: str, value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and key.endswith(("ts", "_at", "start", "end")):
        return iso(float(value))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)
