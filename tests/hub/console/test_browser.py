"""The console in a real browser (Playwright driving Debian's Chromium) against a real production-mode hub, broker
and agents: a technician resolves the newest incident as a confirmed bearing fault and the label joins the trace
in the store; an operator starts a rollout, pauses and resumes it, and watches it advance live without a reload.
Screenshots of every page are saved under the test's tmp_path for review.

No browser download: `scripts/ensure-chromium.sh` (run by ``make test``) installs the system Chromium; without it
the tests fail with that one-line fix, they never skip.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from fleetloop.devbroker import DevBroker
from hub.store.rows import IncidentQuery
from shared.manifest import MANIFEST_FILE, MODEL_FILE
from tests.field.harness import FieldFleet
from tests.fixtures.broker import DEVICES

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AGENTS = list(DEVICES[:2])
STAGE = {"min_duration_s": 3, "min_windows": 10, "timeout_s": 120}
HUB_SETTINGS = {
    "FLEETLOOP_HUB_INCIDENTS__INTERVAL_S": "0.5",  # incidents a moment after their windows, not 10 s
    "FLEETLOOP_HUB_INCIDENTS__MIN_WINDOWS": "2",
    "FLEETLOOP_HUB_ROLLOUT_TICK_S": "0.5",
    "FLEETLOOP_HUB_ROLLOUT_POLICIES": json.dumps({"canary": STAGE, "fleet": STAGE}),  # seconds, not hours
    # seconds of two simulated machines say nothing about a model: the point here is the operator's screen
    "FLEETLOOP_HUB_ROLLOUT_LIMITS": json.dumps({"anomaly_rate_factor": 1000, "rollback_anomaly_factor": 1000,
                                                "max_score_psi": 100, "latency_p99_ms": 1000}),
    "FLEETLOOP_HUB_CONSOLE__POLL_S": "0.5",
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[FieldFleet]:
    """One production-mode hub with two agents for the module (started once: both tests read it)."""
    root = tmp_path_factory.mktemp("console-fleet")
    broker = DevBroker(root / "broker", devices=DEVICES)
    broker.start()
    running = FieldFleet(root, broker, initial_model_dir, hub_settings=HUB_SETTINGS)
    try:
        running.start_hub()
        for device in AGENTS:
            running.start_agent(device)
        yield running
    finally:
        running.close()
        broker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure-chromium.sh` (or `make test`)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    context.close()


def sign_in(page: Page, fleet: FieldFleet, role: str, who: str, shots: Path) -> None:
    page.goto(f"{fleet.url}/console")
    expect(page).to_have_url(f"{fleet.url}/console/sign-in?next=%2Fconsole")
    page.get_by_label("API token").fill(fleet.tokens[role])
    page.get_by_label("Your name or technician id").fill(who)
    page.screenshot(path=shots / "sign-in.png")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".whoami")).to_contain_text(f"{who} · {role}")


def test_a_technician_resolves_the_newest_incident_as_a_bearing_fault(fleet: FieldFleet, page: Page,
                                                                      tmp_path: Path) -> None:
    store = fleet.store()
    try:
        def open_incidents() -> list[str]:
            return [r.id for r in store.incidents(IncidentQuery(states=("open",), limit=10))]

        fleet.wait(lambda: bool(open_incidents()), "an open incident from the agents' alarms", timeout=45)
        sign_in(page, fleet, "technician", "alice", tmp_path)
        page.screenshot(path=tmp_path / "incidents.png", full_page=True)
        rows = page.locator("#incidents tbody tr")
        expect(rows.first).to_be_visible()
        starts = rows.evaluate_all("rows => rows.map(r => [r.dataset.incident, parseFloat(r.dataset.start)])")
        newest = max(starts, key=lambda pair: pair[1])[0]
        page.locator(f'tr[data-incident="{newest}"] a').click()
        expect(page.locator("h1")).to_contain_text("Incident on")
        expect(page.locator("#trace .score")).to_contain_text("above the threshold")
        expect(page.locator("#moves")).to_be_visible()  # named features from the serving manifest, by z-score
        trace_id = page.locator("#trace h2").inner_text().removeprefix("Trace ").strip()
        page.screenshot(path=tmp_path / "incident.png", full_page=True)
        page.keyboard.press("a")  # the keyboard shortcut of Acknowledge
        expect(page.locator("#incident-state")).to_have_text("acknowledged")
        page.get_by_label("Fault type").select_option("bearing")
        page.get_by_role("button", name="Confirmed fault").click()
        expect(page.locator("#incident-state")).to_have_text("resolved")
        expect(page.locator("#incident-verdict")).to_contain_text("confirmed fault (bearing) by alice")
        expect(page.locator("#labels")).to_contain_text("fault (bearing) by alice")
        page.screenshot(path=tmp_path / "incident-resolved.png", full_page=True)
        row = store.incident(newest)
        assert row is not None and (row.state, row.verdict, row.fault_type, row.resolved_by, row.acknowledged_by) == (
            "resolved", "confirmed_fault", "bearing", "alice", "alice")
        labels = store.annotations(trace_id=trace_id)  # the label joined the trace the page showed
        assert [(a.label, a.fault_type, a.technician_id) for a in labels] == [("fault", "bearing", "alice")]
        page.get_by_role("link", name="Fleet", exact=True).click()
        expect(page.locator("#devices tbody tr")).to_have_count(len(AGENTS))
        page.screenshot(path=tmp_path / "fleet.png", full_page=True)
        page.get_by_role("link", name=row.device_id, exact=True).click()
        expect(page.locator("#timeline svg")).to_be_visible()
        page.screenshot(path=tmp_path / "device.png", full_page=True)
        for link, shot, shown in (("Labeling queue", "queue", "#queue"), ("Models", "models", "#models"),
                                  ("Drift", "drift", "h1")):
            page.get_by_role("link", name=link, exact=True).click()
            expect(page.locator(shown)).to_be_visible()
            page.screenshot(path=tmp_path / f"{shot}.png", full_page=True)
    finally:
        store.close()
    for name in ("sign-in", "incidents", "incident", "incident-resolved", "fleet", "device", "queue", "models",
                 "drift"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def _candidate(fleet: FieldFleet, tmp: Path, version: str) -> Path:
    """The active model as another version (same weights): a candidate to roll out."""
    out = tmp / version
    out.mkdir(parents=True)
    shutil.copyfile(fleet.hub_dir / "models" / fleet.initial_version / MODEL_FILE, out / MODEL_FILE)
    manifest = json.loads((fleet.hub_dir / "models" / fleet.initial_version / MANIFEST_FILE).read_text())
    manifest["version"] = version
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    return out


def test_an_operator_starts_pauses_resumes_and_watches_a_rollout_advance_live(fleet: FieldFleet, page: Page,
                                                                              tmp_path: Path) -> None:
    fleet.submit_model(_candidate(fleet, tmp_path, "v2"), "console browser test", skip_gate=True)
    sign_in(page, fleet, "operator", "ana", tmp_path)
    page.get_by_role("link", name="Rollouts", exact=True).click()
    page.get_by_label("Candidate").select_option("v2")
    page.get_by_label("Canary: a fraction of the fleet, or device ids").fill(AGENTS[0])
    page.locator("#start").get_by_label("Why").fill("console browser test")
    page.screenshot(path=tmp_path / "rollouts.png", full_page=True)
    page.get_by_role("button", name="Start rollout").click()
    status = page.locator("#rollout-status")
    expect(status).to_have_attribute("data-stage", "canary")
    page.get_by_role("button", name="Pause").click()
    expect(status).to_have_attribute("data-paused", "true")
    expect(page.locator("#decision")).to_contain_text("Paused by an operator")
    page.screenshot(path=tmp_path / "rollout-paused.png", full_page=True)
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_attribute("data-paused", "false")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    expect(status).to_have_attribute("data-stage", "fleet", timeout=45_000)  # the live fragment, polled
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded to show progress"
    assert int(page.locator("#live").get_attribute("data-polled") or "0") > 0
    page.screenshot(path=tmp_path / "rollout-live.png", full_page=True)
    expect(status).to_have_attribute("data-status", "completed", timeout=45_000)
    expect(page.locator("#decision")).to_contain_text("Completed")
    assert page.evaluate("window.__sameDocument === true")
    page.screenshot(path=tmp_path / "rollout-completed.png", full_page=True)
    with fleet.api("viewer") as api:
        [rollout] = api.get("/rollouts").json()
    actions = [t["action"] for t in api_history(fleet, rollout["id"])]
    assert actions[:3] == ["start", "pause", "resume"] and actions[-1] == "complete", actions
    for name in ("rollouts", "rollout-paused", "rollout-live", "rollout-completed"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def api_history(fleet: FieldFleet, rollout_id: str) -> list[dict[str, str]]:
    with fleet.api("viewer") as api:
        history: list[dict[str, str]] = api.get(f"/rollouts/{rollout_id}").json()["history"]
    return history
