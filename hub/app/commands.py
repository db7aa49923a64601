"""The operator commands of `fleetloop hub`: each one calls the running hub's API (`hub.app.client`) and prints
the answer as tables (`hub.app.render`) or, with ``--json``, as the hub's JSON.

Refusals travel as `hub.errors.HubClientError` (the CLI prints one line and exits with its code); a usage
problem is a `ConfigError` (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from hub.app import render
from hub.app.client import HubClient
from hub.errors import HubRefusedError
from infra.cliformat import parse_time
from shared.errors import ConfigError

VERDICTS = ("confirmed_fault", "false_alarm", "no_fault_found")
JOB_DONE = ("succeeded", "failed")
POLL_S = 0.5


def _client(args: argparse.Namespace) -> HubClient:
    return HubClient.from_args(args.hub, args.token_file)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _json(data: Any) -> None:
    _out(json.dumps(data, indent=2))


def _actor(args: argparse.Namespace) -> dict[str, str]:
    return {"actor": args.actor} if getattr(args, "actor", None) else {}


# --- reads ------------------------------------------------------------------------------------------------------
def devices(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        rows = hub.get("/devices")
    _json(rows) if args.json else _out(render.devices_table(rows))
    return 0


def drift(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        reports = hub.get("/drift", scope=args.scope, limit=args.limit)
    shown = reports if args.all else render.latest_per_scope(reports)
    if args.json:
        _json(shown)
    else:
        _out(render.drift_table(shown) if shown else "no drift reports yet (the hub computes them every "
             "drift.interval_s once devices send statistics)")
    return 0


def performance(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        body = hub.get("/performance", version=args.version)
    _json(body) if args.json else _out(render.performance_table(body))
    return 0


def regimes(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        body = hub.get("/regimes")
    _json(body) if args.json else _out(render.regimes_text(body))
    return 0


def dead_letters(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        rows = hub.get("/dead-letters", limit=args.limit, reason=args.reason)
        counts = hub.get("/dead-letters/counts")
    if args.json:
        _json({"counts": counts, "latest": rows})
    else:
        _out(render.dead_letters_text(counts, rows))
    return 0


# --- models and retraining --------------------------------------------------------------------------------------
def models(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        if args.register:
            return _register(hub, args)
        if args.skip_gate:
            if not args.version:
                raise ConfigError("--skip-gate applies to --register DIR, or to a registered VERSION")
            if not args.reason:
                raise ConfigError("--skip-gate needs --reason (recorded as the version's gate decision)")
            row = hub.post(f"/models/{args.version}/skip-gate", {"reason": args.reason, **_actor(args)})
            _json(row) if args.json else _out(f"{row.get('version')}: gate skipped, {row.get('status')} (audited)")
            return 0
        if args.version:
            detail = hub.get(f"/models/{args.version}")
            _json(detail) if args.json else _out(render.model_text(detail))
            return 0
        rows = hub.get("/models", status=args.status, limit=args.limit)
        if any("gate_verdict" not in r and "gate" not in r for r in rows):  # the list has no verdicts: ask per version
            rows = [r | {"gate": hub.get(f"/models/{r['version']}").get("gate")} for r in rows]
    _json(rows) if args.json else _out(render.models_table(rows))
    return 0


def _register(hub: HubClient, args: argparse.Namespace) -> int:
    if not args.reason:
        raise ConfigError("--register needs --reason (recorded in the version's audit trail)")
    if args.status:
        raise ConfigError("--status filters the list; a registered version is gated into its status (the first "
                          "model of a fleet: `fleetloop provision register-model DIR` before `hub serve`)")
    body = {"path": str(args.register.expanduser().absolute()), "reason": args.reason, "skip_gate": args.skip_gate}
    row = hub.post("/models", body)
    if args.json:
        _json(row)
        return 0
    verdict = render.gate_verdict(row) or ("skipped" if args.skip_gate else "none")
    _out(f"registered {row.get('version')} ({row.get('status')}), signed; gate: {verdict}")
    if isinstance(row.get("gate"), Mapping):
        _out("\n".join(render.gate_lines(row["gate"])))
    return 0


def retrain(args: argparse.Namespace) -> int:
    """Exit 0 once the hub judged the candidate (whatever the verdict); 1 refused or the job failed."""
    body = {"reason": args.reason, "label_set_id": args.label_set, "regimes": args.regimes, **_actor(args)}
    with _client(args) as hub:
        accepted = hub.post("/retrain", {k: v for k, v in body.items() if v is not None})
        if args.no_wait:
            _json(accepted) if args.json else _out(f"retrain job {accepted['job_id']} queued "
                                                   f"({accepted['total_labels']} labels, {accepted['new_labels']} new)")
            return 0
        job = _wait_job(hub, accepted["job_id"], args.timeout)
        model = hub.get(f"/models/{job['result_version']}") if job.get("result_version") else None
    if args.json:
        _json({"job": job, "model": model})
    else:
        _out(render.retrain_text(job, model))
    return 1 if job["status"] == "failed" else 0


def _wait_job(hub: HubClient, job_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = hub.get(f"/retrain/{job_id}")
        if job["status"] in JOB_DONE:
            return job
        if time.monotonic() > deadline:
            raise ConfigError(f"retrain job {job_id} is still {job['status']} ({job['stage']}) after "
                              f"{timeout_s:.0f} s; follow it with GET /retrain/{job_id}")
        time.sleep(POLL_S)


# --- rollouts ---------------------------------------------------------------------------------------------------
def resolve_rollout(hub: HubClient, prefix: str) -> str:
    """The id of the one rollout whose id starts with `prefix`; HubRefusedError (one line) if none or several."""
    ids = [r["id"] for r in hub.get("/rollouts", limit=1000)]
    if prefix in ids:
        return prefix
    matches = [i for i in ids if i.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise HubRefusedError(f"no rollout id starts with {prefix!r} (`fleetloop hub rollout list` shows them)", 404)
    raise HubRefusedError(f"{prefix!r} is ambiguous: {len(matches)} rollouts start with it "
                          f"({', '.join(m[:12] for m in matches[:5])}); give more characters", 409)


def rollout(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        if args.action == "list":
            rows = hub.get("/rollouts", limit=args.limit)
            if args.json or not rows:
                _json(rows) if args.json else _out("no rollouts yet")
                return 0
            every = [r["id"] for r in hub.get("/rollouts", limit=1000)] if len(rows) >= args.limit else []
            _out(render.rollouts_table(rows, every))  # prefixes unique among every rollout, as `show` resolves them
            return 0
        if args.action != "start" and args.health_limit:
            raise ConfigError("--health-limit applies to 'rollout start' only")
        if args.action == "show":
            if not args.target:
                raise ConfigError("'rollout show' needs a rollout id (or a unique prefix)")
            detail = hub.get(f"/rollouts/{resolve_rollout(hub, args.target)}")
            _json(detail) if args.json else _out(render.rollout_text(detail))
            return 0
        if not args.reason:
            raise ConfigError(f"'rollout {args.action}' needs --reason (recorded with who and when)")
        body = {"reason": args.reason, **_actor(args)}
        if args.action == "revert":
            result = hub.post("/rollouts/revert", body)
        elif args.action == "start":
            if not args.target:
                raise ConfigError("'rollout start' needs the candidate version")
            result = hub.post("/rollouts", body | _start_body(args))
        else:
            if not args.target:
                raise ConfigError(f"'rollout {args.action}' needs a rollout id (or a unique prefix)")
            result = hub.post(f"/rollouts/{resolve_rollout(hub, args.target)}/{args.action}", body)
    _json(result) if args.json else _out(render.rollout_text(result))
    return 0


def _start_body(args: argparse.Namespace) -> dict[str, Any]:
    canary: float | list[str]
    try:
        canary = float(args.canary)
    except ValueError:
        canary = [d.strip() for d in args.canary.split(",") if d.strip()]
    body: dict[str, Any] = {"candidate": args.target, "canary": canary, "shadow": args.shadow}
    limits = {}
    for item in args.health_limit:
        name, sep, value = item.partition("=")
        try:
            limits[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--health-limit {item!r}: expected NAME=NUMBER") from None
        if not sep:
            raise ConfigError(f"--health-limit {item!r}: expected NAME=NUMBER")
    if limits:
        body["limits"] = limits
    return body


# --- drift references -------------------------------------------------------------------------------------------
def reference(args: argparse.Namespace) -> int:
    with _client(args) as hub:
        if args.action == "show":
            result = hub.get(f"/drift/reference/{args.version}")
        else:
            if not args.start or not args.reason:
                raise ConfigError("'reference take' needs --start (and --end, default now) and --reason")
            now = time.time()
            start, end = parse_time(args.start, now), parse_time(args.end, now)
            if end <= start:
                raise ConfigError(f"--end ({args.end}) is not after --start ({args.start})")
            devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
            result = hub.post("/drift/reference", {"version": args.version, "start": start, "end": end,
                                                   "devices": devices, "reason": args.reason})
    _json(result) if args.json else _out("\n".join(render.mapping_lines(result)))
    return 0


# --- incidents --------------------------------------------------------------------------------------------------
def incidents(args: argparse.Namespace) -> int:
    """list / show ID / ack ID / resolve ID… / missed: each a call of ``/incidents``."""
    now = time.time()
    with _client(args) as hub:
        if args.action == "list":
            result: Any = hub.get("/incidents", device_id=args.device, site=args.site, state=args.state,
                                  since=parse_time(args.since, now) if args.since else None, limit=args.limit,
                                  offset=args.offset)
            _json(result) if args.json else _out(render.incidents_table(result) if result else "no incidents")
            return 0
        if args.action == "missed":
            if not (args.device and args.start and args.fault_type and args.technician):
                raise ConfigError("'incidents missed' needs --device, --start (and --end, default now), --fault-type "
                                  "and --technician")
            result = hub.post("/incidents/missed", {
                "device_id": args.device, "start_ts": parse_time(args.start, now), "end_ts": parse_time(args.end, now),
                "fault_type": args.fault_type, "technician_id": args.technician, "note": args.note})
        elif not args.ids:
            raise ConfigError(f"'incidents {args.action}' needs an incident id")
        elif args.action == "show":
            result = hub.get(f"/incidents/{args.ids[0]}")
        elif not args.technician:
            raise ConfigError(f"'incidents {args.action}' needs --technician (who acts; recorded)")
        elif args.action == "ack":
            result = hub.post(f"/incidents/{args.ids[0]}/acknowledge", {"technician_id": args.technician})
        else:
            if not args.verdict:
                raise ConfigError(f"'incidents resolve' needs --verdict ({', '.join(VERDICTS)})")
            body = {"technician_id": args.technician, "verdict": args.verdict, "fault_type": args.fault_type,
                    "note": args.note}
            if len(args.ids) == 1:
                result = hub.post(f"/incidents/{args.ids[0]}/resolve", body)
            else:
                result = hub.post("/incidents/resolve", body | {"incident_ids": args.ids})
                _json(result) if args.json else _out(render.batch_text(result))
                return 0 if all(r["status"] == 200 for r in result) else 1
    _json(result) if args.json else _out("\n".join(render.mapping_lines(result)))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "devices": devices, "drift": drift, "performance": performance, "dead-letters": dead_letters,
    "models": models, "retrain": retrain, "regimes": regimes,
    "rollout": rollout, "reference": reference, "incidents": incidents,
}
