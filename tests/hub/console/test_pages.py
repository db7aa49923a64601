"""Every console page and form on the real app, for every role: sign-in and sign-out, who may do what (a viewer
cannot resolve, a technician cannot roll out), CSRF refused without the session's token, and a visitor who is
not signed in sent to sign in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hub.rollout.service import RolloutService
from hub.store.rows import IncidentQuery
from tests.hub.api.conftest import T0, TOKEN, Hub, online, running_hub
from tests.hub.console.conftest import csrf, hidden, make_incidents, sign_in

ROLES = ("viewer", "technician", "operator")
PAGES = ("/console/incidents", "/console/incidents?done=true", "/console/fleet", "/console/fleet?site=plant-a",
         "/console/rollouts", "/console/devices/pump-1", "/console/devices/pump-1?hours=24", "/console/drift",
         "/console/drift?scope=device:pump-1")


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in_and_back(hub: Hub) -> None:
    ids = make_incidents(hub)
    anon = sign_in(hub, None)
    for path in (*PAGES, f"/console/incidents/{ids['pump-1']}", "/console"):
        answer = anon.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/sign-in?next=%2Fconsole"), path
    posted = anon.post(f"/console/incidents/{ids['pump-1']}/resolve", data={"verdict": "false_alarm", "csrf": "x"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/console/sign-in")
    assert hub.store.incident(ids["pump-1"]).state == "open"  # type: ignore[union-attr]
    page = anon.get("/console/sign-in", params={"next": "/console/fleet"})
    assert page.status_code == 200 and 'value="/console/fleet"' in page.text
    done = anon.post("/console/sign-in", data={"token": TOKEN["viewer"], "who": "vic",
                                               "nonce": hidden(page.text, "nonce"), "next": "/console/fleet"})
    assert done.status_code == 303 and done.headers["location"] == "/console/fleet"


def test_sign_in_sets_a_hardened_cookie_without_the_token_and_sign_out_ends_it(hub: Hub) -> None:
    client = sign_in(hub, None)
    page = client.get("/console/sign-in")
    answer = client.post("/console/sign-in", data={"token": TOKEN["technician"], "who": "alice",
                                                   "nonce": hidden(page.text, "nonce")})
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("fleetloop_console="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    assert "secure" not in flags  # plain http here; https gets Secure
    assert TOKEN["technician"] not in cookie
    home = client.get("/console/incidents")
    assert home.status_code == 200 and "alice · technician" in home.text
    out = client.post("/console/sign-out", data={"csrf": hidden(home.text, "csrf")})
    assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
    assert client.get("/console/incidents").status_code == 303


def test_behind_tls_the_cookie_is_secure(hub: Hub) -> None:
    client = sign_in(hub, None)
    https = {"X-Forwarded-Proto": "https"}  # a TLS-terminating proxy on the same host (uvicorn trusts loopback)
    page = client.get("/console/sign-in", headers=https)
    assert "secure" in page.headers["set-cookie"].lower()  # the sign-in form's nonce cookie too
    nonce_cookie = f"fleetloop_console_sign_in={page.cookies['fleetloop_console_sign_in']}"  # httpx keeps Secure
    answer = client.post("/console/sign-in", headers={**https, "Cookie": nonce_cookie},  # cookies for https only
                         data={"token": TOKEN["viewer"], "who": "vic", "nonce": hidden(page.text, "nonce")})
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("fleetloop_console="))
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


def test_sign_in_refuses_an_unknown_token_a_bad_name_and_a_form_without_its_nonce(hub: Hub) -> None:
    client = sign_in(hub, None)
    nonce = hidden(client.get("/console/sign-in").text, "nonce")
    wrong = client.post("/console/sign-in", data={"token": "guess-0123456789abcdef0123", "who": "eve", "nonce": nonce})
    assert wrong.status_code == 401 and "Unknown token" in wrong.text
    nonce = hidden(wrong.text, "nonce")
    nameless = client.post("/console/sign-in", data={"token": TOKEN["viewer"], "who": "<script>", "nonce": nonce})
    assert nameless.status_code == 401 and "Give your name" in nameless.text
    forged = sign_in(hub, None).post("/console/sign-in", data={"token": TOKEN["operator"], "who": "eve",
                                                               "nonce": "made-up"})
    assert forged.status_code == 403 and "fleetloop_console=" not in forged.headers.get("set-cookie", "")
    bare = sign_in(hub, None)
    bare.get("/console/sign-in")  # the nonce cookie, but the form lacks its nonce
    assert bare.post("/console/sign-in", data={"token": TOKEN["operator"], "who": "eve"}).status_code == 403
    offsite = sign_in(hub, None)
    page = offsite.get("/console/sign-in", params={"next": "https://evil.example/"})
    assert 'value="/console/incidents"' in page.text  # never an open redirect


def test_a_forged_or_tampered_cookie_is_not_a_session(hub: Hub) -> None:
    client = sign_in(hub, "viewer")
    value = client.cookies["fleetloop_console"]
    client.cookies.set("fleetloop_console", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"),
                       path="/console")
    assert client.get("/console/fleet").status_code == 303


@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_for_every_role(hub: Hub, rollouts: RolloutService, role: str) -> None:
    ids = make_incidents(hub)
    started = rollouts.start("v2", actor="operator:ana", reason="drift at plant-a", canary=["pump-1"])
    rollouts.tick(hub.clock.now + 1)  # a judged decision: with the candidate's label-free estimate, or why none
    client = sign_in(hub, role)
    for path in (*PAGES, f"/console/incidents/{ids['pump-3']}", f"/console/rollouts/{started.id}",
                 f"/console/rollouts/{started.id}/live", "/console/models", "/console/models/v1",
                 "/console/models/v2"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert "text/html" in page.headers["content-type"]
    queue = client.get("/console/queue")
    assert queue.status_code == (403 if role == "viewer" else 200)  # as GET /queue: technicians and operators
    inbox = client.get("/console/incidents").text
    assert all(ids[d] in inbox for d in ids)
    assert inbox.index(ids["pump-3"]) < inbox.index(ids["pump-1"])  # the most severe first
    fleet = client.get("/console/fleet?site=plant-b").text
    assert "pump-2" in fleet and "pump-1" not in fleet
    live = client.get(f"/console/rollouts/{started.id}/live").text
    assert "<html" not in live and 'data-stage="canary"' in live
    assert ("The candidate's label-free estimate on the stage's traffic: none (no calibration: the candidate&#39;s "
            "manifest has no calibration)") in live
    assert ("Pause</button>" in live) == (role == "operator")  # buttons only for operators
    resolve_buttons = 'value="confirmed_fault"' in client.get(f"/console/incidents/{ids['pump-3']}").text
    assert resolve_buttons == (role != "viewer")


def test_the_incident_page_reads_the_trace_in_words(hub: Hub) -> None:
    ids = make_incidents(hub)
    page = sign_in(hub, "viewer").get(f"/console/incidents/{ids['pump-3']}").text
    assert "score 0.800, above the threshold 0.500 (1.6×)" in page
    assert "<time>2023-11-14T22:16:40Z</time>" in page  # ISO times (T0 + 200), not unix seconds
    assert "f0" in page and "unnamed: the hub has no manifest of this version" in page


def test_the_models_page_says_the_gate_in_words_with_the_audit_trail(hub: Hub, rollouts: RolloutService) -> None:
    viewer = sign_in(hub, "viewer")
    listed = viewer.get("/console/models").text
    assert 'data-version="v1"' in listed and 'data-version="v2"' in listed
    v2 = viewer.get("/console/models/v2").text
    assert "The gate passed it: it may replace the active version." in v2
    assert "gate passed against v1" in v2 and "hub:retrain" in v2  # the audit trail: who and why
    assert "No gate decision" in viewer.get("/console/models/v1").text
    assert viewer.get("/console/models/v9").status_code == 404


def test_a_viewer_cannot_acknowledge_or_resolve(hub: Hub) -> None:
    ids = make_incidents(hub)
    viewer = sign_in(hub, "viewer")
    token = csrf(viewer)
    for action, data in (("acknowledge", {}), ("resolve", {"verdict": "false_alarm"})):
        refused = viewer.post(f"/console/incidents/{ids['pump-1']}/{action}", data={"csrf": token, **data})
        assert refused.status_code == 403 and "needs the role technician or operator" in refused.text
    batch = viewer.post("/console/incidents/resolve", data={"csrf": token, "incident_id": list(ids.values()),
                                                            "verdict": "false_alarm"})
    assert batch.status_code == 403
    assert {r.state for r in hub.store.incidents(IncidentQuery(states=()))} == {"open"}


def test_a_technician_acknowledges_and_resolves_and_the_verdict_labels_every_window(hub: Hub) -> None:
    ids = make_incidents(hub)
    tech = sign_in(hub, "technician", who="alice")
    token = csrf(tech)
    acked = tech.post(f"/console/incidents/{ids['pump-1']}/acknowledge", data={"csrf": token})
    assert acked.status_code == 303 and acked.headers["location"] == f"/console/incidents/{ids['pump-1']}"
    done = tech.post(f"/console/incidents/{ids['pump-1']}/resolve", data={
        "csrf": token, "verdict": "confirmed_fault", "fault_type": "bearing", "note": "outer race"})
    assert done.status_code == 303
    row = hub.store.incident(ids["pump-1"])
    assert row is not None and (row.state, row.acknowledged_by, row.resolved_by, row.fault_type) == (
        "resolved", "alice", "alice", "bearing")
    traces = {w.trace_id for w in hub.store.incident_windows(ids["pump-1"])}
    labels = hub.store.annotations(device_id="pump-1")
    assert {a.trace_id for a in labels} == traces and {(a.fault_type, a.technician_id) for a in labels} == {
        ("bearing", "alice")}
    page = tech.get(f"/console/incidents/{ids['pump-1']}").text
    assert "confirmed fault (bearing) by alice" in page and 'id="labels"' in page
    again = tech.post(f"/console/incidents/{ids['pump-1']}/resolve", data={"csrf": token, "verdict": "false_alarm"})
    assert again.status_code == 409 and "resolved" in again.text
    bad = tech.post(f"/console/incidents/{ids['pump-2']}/resolve", data={"csrf": token, "verdict": "shrug"})
    assert bad.status_code == 400 and "choose a verdict" in bad.text


def test_batch_resolve_resolves_the_ticked_incidents(hub: Hub) -> None:
    ids = make_incidents(hub)
    tech = sign_in(hub, "technician", who="bob")
    done = tech.post("/console/incidents/resolve", data={"csrf": csrf(tech), "verdict": "false_alarm",
                                                         "incident_id": [ids["pump-1"], ids["pump-2"]]})
    assert done.status_code == 303
    states = {d: hub.store.incident(i).state for d, i in ids.items()}  # type: ignore[union-attr]
    assert states == {"pump-1": "resolved", "pump-2": "resolved", "pump-3": "open"}


@pytest.mark.parametrize("token", [None, "", "not-the-session-token"])
def test_a_form_without_the_sessions_csrf_token_is_refused(hub: Hub, rollouts: RolloutService,
                                                           token: str | None) -> None:
    ids = make_incidents(hub)
    op = sign_in(hub, "operator")
    data = {} if token is None else {"csrf": token}
    for path, extra in ((f"/console/incidents/{ids['pump-1']}/resolve", {"verdict": "false_alarm"}),
                        (f"/console/incidents/{ids['pump-1']}/acknowledge", {}),
                        ("/console/rollouts", {"candidate": "v2", "reason": "r"}),
                        ("/console/sign-out", {})):
        refused = op.post(path, data={**data, **extra})
        assert refused.status_code == 403 and "CSRF" in refused.text, path
    assert hub.store.incident(ids["pump-1"]).state == "open"  # type: ignore[union-attr]
    assert rollouts.running() is None
    assert op.get("/console/fleet").status_code == 200  # still signed in: the sign-out was refused too
    other = sign_in(hub, "operator", who="other")  # another session's token is no good either
    stolen = op.post(f"/console/incidents/{ids['pump-1']}/acknowledge", data={"csrf": csrf(other)})
    assert stolen.status_code == 403


def test_a_technician_cannot_roll_out_and_an_operator_starts_pauses_resumes_and_rolls_back(
        hub: Hub, rollouts: RolloutService) -> None:
    tech = sign_in(hub, "technician")
    refused = tech.post("/console/rollouts", data={"csrf": csrf(tech), "candidate": "v2", "reason": "r"})
    assert refused.status_code == 403 and "needs the role operator" in refused.text
    assert rollouts.running() is None
    op = sign_in(hub, "operator", who="ana")
    token = csrf(op, "/console/rollouts")
    started = op.post("/console/rollouts", data={"csrf": token, "candidate": "v2", "canary": "pump-1, pump-2",
                                                 "reason": "drift at plant-a"})
    assert started.status_code == 303
    running = rollouts.running()
    assert running is not None and running.row.actor == "operator:ana"
    assert set(running.plan.stages[0].devices) == {"pump-1", "pump-2"}
    assert started.headers["location"] == f"/console/rollouts/{running.id}"
    tech_pause = tech.post(f"/console/rollouts/{running.id}/pause", data={"csrf": csrf(tech)})
    assert tech_pause.status_code == 403 and not rollouts.get(running.id).state.paused
    for action, paused in (("pause", True), ("resume", False)):
        answer = op.post(f"/console/rollouts/{running.id}/{action}", data={"csrf": token})
        assert answer.status_code == 303 and rollouts.get(running.id).state.paused is paused
    live = op.get(f"/console/rollouts/{running.id}/live").text
    assert "resume by operator:ana" in live and "Pause</button>" in live
    twice = op.post(f"/console/rollouts/{running.id}/resume", data={"csrf": token})
    assert twice.status_code == 409
    back = op.post(f"/console/rollouts/{running.id}/rollback", data={"csrf": token, "reason": "not today"})
    assert back.status_code == 303 and rollouts.get(running.id).state.status == "rolled_back"
    words = op.get(f"/console/rollouts/{running.id}").text
    assert "Rolled back: devices return to the incumbent" in words


def test_console_routes_stay_out_of_the_api_schema(hub: Hub) -> None:
    paths = hub.client("viewer").get("/openapi.json").json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/console")]
    css = sign_in(hub, None).get("/console/static/console.css")
    assert css.status_code == 200 and "fleetloop console" in css.text  # shipped in the package, no CDN


def test_the_labeling_queue_labels_a_window_with_one_click(hub: Hub) -> None:
    ids = make_incidents(hub)
    tech = sign_in(hub, "technician", who="carol")
    page = tech.get("/console/queue").text
    [first] = [w.trace_id for w in hub.store.incident_windows(ids["pump-3"])][:1]
    assert f'data-trace="{first}"' in page and 'id="trace"' in page
    token = hidden(page, "csrf")
    done = tech.post(f"/console/queue/{first}", data={"csrf": token, "label": "fault", "fault_type": "bearing"})
    assert done.status_code == 303 and done.headers["location"] == "/console/queue"
    [label] = hub.store.annotations(trace_id=first)
    assert (label.label, label.fault_type, label.technician_id, label.device_id) == ("fault", "bearing", "carol",
                                                                                   "pump-3")
    assert f'data-trace="{first}"' not in tech.get("/console/queue").text  # labelled: out of the queue
    refused = tech.post(f"/console/queue/{first}", data={"csrf": token, "label": "maybe"})
    assert refused.status_code == 400
    unknown = tech.post("/console/queue/no-such-trace", data={"csrf": token, "label": "no_fault"})
    assert unknown.status_code == 404
    viewer = sign_in(hub, "viewer")
    assert viewer.post(f"/console/queue/{first}", data={"csrf": csrf(viewer), "label": "no_fault"}).status_code == 403


def test_the_device_page_draws_scores_against_the_threshold(hub: Hub) -> None:
    make_incidents(hub)
    page = sign_in(hub, "viewer").get("/console/devices/pump-1").text
    assert "<svg" in page and "threshold 0.500" in page and page.count("<circle") == 3  # three alarms
    assert "3 windows sent to the hub, 3 alarms" in page
    assert sign_in(hub, "viewer").get("/console/devices/nope").status_code == 404


def test_the_drift_page_explains_the_verdict_and_maps_psi_over_time(hub: Hub) -> None:
    feature = {"name": "vibration.rms", "psi": 0.9, "drifted": True}
    report = {"scope": "fleet", "verdict": "drift", "reason": "1 of 1 features drifted", "test": "chi2",
              "alpha": 0.01, "psi_threshold": 0.2, "n_current": 400, "n_reference": 5000, "features": [feature]}
    hub.store.save_drift_report(report, "fleet", "drift", ts=T0)
    page = sign_in(hub, "viewer").get("/console/drift").text
    assert "Drift: 1 of 1 features drifted. Each feature is compared with the reference by the chi-squared test" in page
    assert "PSI above 0.2" in page and "Drifted features: vibration.rms." in page
    assert 'class="drifted"' in page and "rgb(179,38,30)" in page  # 0.9 is past twice the threshold: full red


def test_the_fleet_page_lists_a_page_of_devices_and_counts_the_whole_fleet(hub: Hub,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.console.pages import fleet

    monkeypatch.setattr(fleet, "PAGE_SIZE", 2)
    make_incidents(hub)
    viewer = sign_in(hub, "viewer")
    first, second = (viewer.get("/console/fleet", params={"page": n}).text for n in (1, 2))
    assert "3 of 3 devices online" in first and "Page 1 of 2" in first
    assert [d for d in ("pump-1", "pump-2", "pump-3") if f'data-device="{d}"' in first] == ["pump-1", "pump-2"]
    assert [d for d in ("pump-1", "pump-2", "pump-3") if f'data-device="{d}"' in second] == ["pump-3"]
    assert re.search(r'<span class="label">v1</span><span class="bar"[^>]*></span> 3</li>', first)  # whole fleet


def test_in_dev_mode_without_tokens_everyone_signs_in_as_an_operator_with_a_name(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub.db", tokens={}, dev_mode=True) as dev:
        client = sign_in(dev, None)
        page = client.get("/console/sign-in").text
        assert "everyone is an operator" in page and 'name="token" value=""' in page
        done = client.post("/console/sign-in", data={"token": "", "who": "dana", "nonce": hidden(page, "nonce")})
        assert done.status_code == 303
        assert "dana · operator" in client.get("/console/rollouts").text


def test_a_trace_reads_in_words_in_the_api_as_in_the_console(hub: Hub, rollouts: RolloutService) -> None:
    from shared.ids import new_id
    from shared.messages import Anomaly

    manifest = rollouts.registry.manifest("v1")
    assert manifest is not None
    names = manifest.feature_names
    features = _reference_means(manifest)
    moved = len(names) // 2
    features[moved] += 1000.0  # far off its reference: the top mover
    trace_id = new_id()
    hub.ingest(online("pump-1", site="plant-a"),
               Anomaly(device_id="pump-1", ts=T0, trace_id=trace_id, window_start=T0 - 10, window_end=T0, score=0.8,
                       threshold=0.5, decision=True, features=features, model_version="v1"))
    readable = hub.client("viewer").get(f"/traces/{trace_id}").json()["readable"]
    assert (readable["site"], readable["named"], readable["window_end"]) == ("plant-a", True, "2023-11-14T22:13:20Z")
    assert readable["score"] == "score 0.800, above the threshold 0.500 (1.6×)"
    assert [f["name"] for f in readable["features"]] == list(names)
    assert readable["top_movers"][0]["name"] == names[moved] and readable["top_movers"][0]["z"] > 3
    assert hub.client("viewer").get("/traces/unknown").status_code == 404


def _reference_means(manifest: Any) -> list[float]:
    """Each feature's reference median bin edge: a value the reference finds ordinary."""
    return [edges[len(edges) // 2] if edges else 0.0 for edges in manifest.reference.bin_edges]


def test_a_technician_asks_for_the_raw_window_then_the_trace_view_plots_it_per_sensor(hub: Hub) -> None:
    from shared.messages import RawWindow

    ids = make_incidents(hub)
    shown = {d: max(hub.store.incident_windows(i), key=lambda w: w.score).trace_id for d, i in ids.items()}
    viewer = sign_in(hub, "viewer")
    page = viewer.get(f"/console/incidents/{ids['pump-3']}").text
    assert 'data-state="not_requested"' in page and hub.store.raw_window(shown["pump-3"]) is None  # reads never ask
    api = hub.client("viewer")
    assert api.post(f"/traces/{shown['pump-3']}/window").status_code == 403
    technician = hub.client("technician")
    asked = technician.post(f"/traces/{shown['pump-3']}/window")
    assert asked.status_code == 202 and asked.json()["state"] == "requested"
    assert technician.post("/traces/nope/window").status_code == 404
    assert 'id="ask-window"' not in page  # no button for a viewer
    tech = sign_in(hub, "technician", "bob")
    back = f"/console/incidents/{ids['pump-2']}"
    assert 'id="ask-window"' in tech.get(back).text
    done = tech.post(f"/console/traces/{shown['pump-2']}/window", data={"csrf": csrf(tech, back), "back": back})
    assert done.status_code == 303 and done.headers["location"] == back
    assert hub.store.raw_window(shown["pump-2"]).state == "requested"  # type: ignore[union-attr]
    assert tech.post(f"/console/traces/{shown['pump-2']}/window", data={"back": back}).status_code == 403  # no CSRF
    row = hub.store.raw_window(shown["pump-3"])  # not sent yet (no broker here): the raw-window job re-sends it
    assert row is not None and (row.state, row.device_id, row.asks) == ("requested", "pump-3", 0)
    page = viewer.get(f"/console/incidents/{ids['pump-3']}").text
    assert 'data-state="requested"' in page and "Requested from the device" in page

    readings = [[20.0, 21.5, 23.0, 22.0], [1.0, 1.1, 0.9, 1.3]]
    times = [T0 - 3, T0 - 2, T0 - 1, T0]
    hub.ingest(RawWindow(device_id="pump-3", ts=T0, trace_id=shown["pump-3"], sensors=["temp <b>", "vib"],
                         timestamps=times, values=readings),
               RawWindow(device_id="pump-1", ts=T0, trace_id=shown["pump-1"], available=False))
    page = viewer.get(f"/console/incidents/{ids['pump-3']}").text
    plots = page.split('id="raw-window"', 1)[1].split("</div>", 1)[0]
    assert plots.count('<figure class="sensor-plot">') == 2 and plots.count("<polyline") == 2
    assert "<figcaption>temp &lt;b&gt;</figcaption>" in plots and "<figcaption>vib</figcaption>" in plots
    assert ">23<" in plots and ">20<" in plots  # each plot's max and min
    assert "4 readings from <time>2023-11-14T22:13:17Z</time>" in page
    gone = viewer.get(f"/console/incidents/{ids['pump-1']}").text
    assert 'data-state="not_available"' in gone and "<polyline" not in gone.split('id="raw-window"', 1)[1]

    window = api.get(f"/traces/{shown['pump-3']}").json()["raw_window"]
    assert (window["state"], window["sensors"], window["values"]) == ("available", ["temp <b>", "vib"], readings)
    assert window["timestamps"] == times and window["timestamps_iso"][-1] == "2023-11-14T22:13:20Z"
    assert api.get(f"/traces/{shown['pump-1']}").json()["raw_window"]["state"] == "not_available"
    assert api.get(f"/traces/{shown['pump-2']}").json()["raw_window"]["state"] == "requested"

    # feature set 2 sends the readings before the window too: they are shaded, the window's start marked and counted
    start = hub.store.prediction(shown["pump-2"]).window_start  # type: ignore[union-attr]
    context_times = [start - 2, start - 1, start, start + 1, start + 2]
    hub.ingest(RawWindow(device_id="pump-2", ts=T0, trace_id=shown["pump-2"], sensors=["temp"],
                         timestamps=context_times, values=[[20.0, 21.0, 22.0, 23.0, 24.0]]))
    page = viewer.get(f"/console/incidents/{ids['pump-2']}").text
    plots = page.split('id="raw-window"', 1)[1].split("</div>", 1)[0]
    assert plots.count('class="context"') == 1 and "stroke-dasharray" in plots
    assert "the window's 3 from" in page and "after 2 of context (shaded)" in page
