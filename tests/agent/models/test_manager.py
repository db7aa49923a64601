"""Model assignment over a real broker: swap, refusals, health-check rollback, shadow mode, the hub's rollback.

Each test runs an agent in a thread with a pinned signing key, publishes a retained `Assign` as the hub
and watches the model events a hub subscriber receives and the predictions the agent logged.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.app import build_agent
from agent.runtime import Agent
from agent.sources.memory import ArraySource
from fleetloop.story.faults import nan_onnx
from hub.registry.signing import SigningKey
from shared.codec import encode
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, sha256_bytes
from shared.messages import Assign, Command
from shared.wire import replace
from tests.agent.helpers import agent_settings
from tests.fixtures.broker import HUB_USER, Collector, publish, subscribe

SENSORS = ["temperature", "vibration", "pressure", "flow", "current", "rpm"]
SIZE, STEP = 30, 5  # the initial model's window


# -- helpers (also used by the other tests of agent.models) ---------------------------------------------------
def signed_variant(src: Path, dst: Path, version: str, key: SigningKey | None, *, onnx_bytes: bytes | None = None,
                   threshold: float | None = None) -> Path:
    """A copy of version dir `src` as `version` (other model bytes / threshold if given), signed by `key`."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST_FILE).read_text())
    manifest["version"] = version
    if onnx_bytes is not None:
        (dst / MODEL_FILE).write_bytes(onnx_bytes)
        manifest["onnx_sha256"] = sha256_bytes(onnx_bytes)
    if threshold is not None:
        manifest["threshold"] = threshold
    (dst / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    if key is not None:
        key.sign_version(dst)
    return dst


def assignment(version_dir: Path, *, mode: str = "active", url: str | None = None, sha256: str | None = None,
               signature: str | None = None) -> Assign:
    manifest = json.loads((version_dir / MANIFEST_FILE).read_text())
    sig_path = version_dir / SIGNATURE_FILE
    return Assign(
        ts=time.time(), version=manifest["version"], mode=mode, sha256=sha256 or manifest["onnx_sha256"],
        signature=signature if signature is not None else (sig_path.read_text().strip() if sig_path.exists() else ""),
        url=url or version_dir.as_uri(),
    )


_counter = [0]


def approve(assign: Assign, key: SigningKey, device: str, *, ttl_s: float = 3600.0, **fields) -> Assign:
    """`assign` signed for `device` as the hub signs it: a counter above every earlier one, an expiry."""
    _counter[0] = max(_counter[0] + 1, int(time.time() * 1000))
    update = {"device_id": device, "counter": _counter[0], "expires": time.time() + ttl_s, **fields}
    return key.sign_assignment(replace(assign, **update))


def pack(version_dir: Path, top: str | None = None) -> bytes:
    """The version as the hub serves it: a .tar.gz of model.onnx, manifest.json, manifest.sig."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE):
            if (version_dir / name).exists():
                tar.add(version_dir / name, arcname=f"{top}/{name}" if top else name)
    return buf.getvalue()


@dataclass
class Versions:
    key: SigningKey
    v1: Path
    v2: Path
    shadow: Path
    nan: Path
    wrong_key: Path
    tampered: Path


def build_versions(root: Path, initial: Path) -> Versions:
    key = SigningKey.generate()
    v1 = signed_variant(initial, root / "v1", "v1", key)
    n_features = len(json.loads((v1 / MANIFEST_FILE).read_text())["feature_names"])
    tampered = signed_variant(initial, root / "v5", "v5", key)
    data = bytearray((tampered / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / MODEL_FILE).write_bytes(bytes(data))  # signature and manifest intact, the model is not
    return Versions(
        key=key, v1=v1, v2=signed_variant(initial, root / "v2", "v2", key),
        shadow=signed_variant(initial, root / "v2s", "v2s", key, threshold=0.95),
        nan=signed_variant(initial, root / "v3", "v3", key, onnx_bytes=nan_onnx(n_features)),
        wrong_key=signed_variant(initial, root / "v4", "v4", SigningKey.generate()),
        tampered=tampered,
    )


def PacedSource(n: int, rate: float, seed: int = 0) -> ArraySource:
    """Simulated-looking readings released `rate` per second (so a swap happens mid-stream)."""
    return ArraySource(SENSORS, np.random.default_rng(seed).normal(size=(n, len(SENSORS))) + 50, rate=rate)


def expected_windows(n: int) -> int:
    return (n - SIZE) // STEP + 1


@dataclass
class Running:
    agent: Agent
    thread: threading.Thread
    stop: threading.Event

    def finish(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive()


def start_agent(settings, source) -> Running:
    agent = build_agent(settings, source)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, kwargs={"stop": stop, "drain_s": 5}, daemon=True)
    thread.start()
    return Running(agent, thread, stop)


def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def model_events(collector: Collector) -> list[dict]:
    return [m.json() for m in collector.messages if m.topic.endswith("/model/event")]


def has_event(event: str, version: str):
    def check(messages) -> bool:
        return any(m.topic.endswith("/model/event") and m.json()["event"] == event and m.json()["version"] == version
                   for m in messages)
    return check


def predictions(db_path: Path, columns: str = "ts, model_version, score") -> list[tuple]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(f"SELECT {columns} FROM predictions ORDER BY id").fetchall()
    finally:
        conn.close()


def state(db_path: Path, key: str) -> str | None:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]
    finally:
        conn.close()


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def versions(tmp_path_factory, initial_model_dir) -> Versions:
    return build_versions(tmp_path_factory.mktemp("assign"), initial_model_dir)


@dataclass
class Hub:
    client: object
    events: Collector
    device: str
    key: SigningKey | None = None  # set: assignments are signed for the device, as the hub does

    def assign(self, assign: Assign) -> None:
        if self.key is not None and assign.approval is None:
            assign = approve(assign, self.key, self.device)
        publish(self.client, f"fleetloop/{self.device}/model/assign", encode(assign), retain=True)

    def command(self, cmd: Command) -> None:
        publish(self.client, f"fleetloop/{self.device}/cmd", encode(cmd))


@pytest.fixture
def hub(request, broker, mqtt_clients):
    """A hub-side client for a device of this test's own; the retained assignment is cleared afterwards."""
    device = "asg-" + request.node.name.removeprefix("test_")[:20].replace("_", "-").strip("-")
    broker.add_device(device)
    events = Collector()
    client = mqtt_clients.connect(broker, HUB_USER, collector=events)
    subscribe(client, f"fleetloop/{device}/model/event")
    yield Hub(client, events, device)
    publish(client, f"fleetloop/{device}/model/assign", b"", retain=True)


def _settings(tmp_path, broker, hub, versions, **overrides):
    hub.key = versions.key
    return agent_settings(tmp_path, broker, hub.device, versions.v1, dev_mode=False,
                          model_public_key=versions.key.public_key_text(), **overrides)


# -- tests ---------------------------------------------------------------------------------------------------
def test_assignment_swaps_without_dropping_a_window(tmp_path, broker, hub, versions):
    n, rate = 2500, 500.0
    settings = _settings(tmp_path, broker, hub, versions, health_windows=20)
    run = start_agent(settings, PacedSource(n, rate))
    wait_until(lambda: run.agent.counters.windows >= 100, what="windows with v1")
    hub.assign(assignment(versions.v2))
    hub.events.wait_for(has_event("health_ok", "v2"), timeout=15)
    run.thread.join(30)  # the source runs out, the agent stops by itself
    assert not run.thread.is_alive()

    assert run.agent.counters.windows == expected_windows(n)  # none dropped by the swap
    assert run.agent.counters.extra.get("window_resets", 0) == 0
    rows = predictions(settings.db_path)
    assert len(rows) == expected_windows(n)
    served = [v for _, v, _ in rows]
    switch = served.index("v2")
    assert switch >= 100 and set(served[:switch]) == {"v1"} and set(served[switch:]) == {"v2"}
    # How long the loop may pause for the fetch, verify and load, and windows/s across the swap, are speed budgets:
    # bench/budgets.py measures them (a test on a busy 2-core machine would only measure the machine).

    events = model_events(hub.events)
    assert [(e["event"], e["version"], e["model_version"]) for e in events] == [
        ("loaded", "v1", "v1"), ("swapped", "v2", "v2"), ("health_ok", "v2", "v2")]
    assert events[2]["metrics"]["windows"] == 20 and events[2]["metrics"]["nan_scores"] == 0
    assert (state(settings.db_path, "model.active"), state(settings.db_path, "model.previous")) == ("v2", "v1")
    assert state(settings.db_path, "model.health_pending") is None


def test_tampered_or_badly_signed_artifacts_are_refused_and_v1_keeps_serving(tmp_path, broker, hub, versions):
    settings = _settings(tmp_path, broker, hub, versions)
    run = start_agent(settings, PacedSource(100_000, 300.0))
    try:
        wait_until(lambda: run.agent.counters.windows >= 10, what="windows with v1")
        publish(hub.client, f"fleetloop/{hub.device}/model/assign", b'{"version": "v9"}', retain=True)
        wait_until(lambda: run.agent.counters.extra.get("bad_inbound") == 1, what="the bad assignment dropped")
        cases = [
            (assignment(versions.v2, sha256="ab" * 32), "the assignment says"),  # sha differs from the manifest
            (assignment(versions.tampered), f"{MODEL_FILE} is"),  # the model differs from both
            (assignment(versions.wrong_key), "bad signature"),
            (assignment(versions.v2, signature=""), None),  # unsigned in the assignment, signed artifact: fine
        ]
        for assign, reason in cases[:3]:
            hub.assign(assign)
            messages = hub.events.wait_for(has_event("refused", assign.version), timeout=10)
            refusal = [m.json() for m in messages if m.json()["event"] == "refused"][-1]
            assert reason in refusal["detail"] and refusal["model_version"] == "v1"
            hub.events.clear()
        assert run.agent.model.version == "v1"
        assert state(settings.db_path, "model.active") == "v1"
        assert {v for _, v, _ in predictions(settings.db_path)} == {"v1"}
        assert sorted(p.name for p in settings.model_dir.iterdir() if not p.name.startswith(".")) == ["v1"]
        hub.assign(cases[3][0])
        hub.events.wait_for(has_event("health_ok", "v2"), timeout=10)
    finally:
        run.finish()


def test_a_nan_model_is_rolled_back_by_the_health_check_and_not_retried(tmp_path, broker, hub, versions):
    settings = _settings(tmp_path, broker, hub, versions)
    run = start_agent(settings, PacedSource(100_000, 300.0))
    try:
        wait_until(lambda: run.agent.counters.windows >= 10, what="windows with v1")
        hub.assign(assignment(versions.nan))
        hub.events.wait_for(has_event("rolled_back", "v3"), timeout=10)
        wait_until(lambda: run.agent.counters.windows >= 60, what="windows after the rollback")
        assert run.agent.model.version == "v1"
    finally:
        run.finish()
    events = [(e["event"], e["version"], e["model_version"]) for e in model_events(hub.events)]
    assert events[:4] == [("loaded", "v1", "v1"), ("swapped", "v3", "v3"), ("health_failed", "v3", "v3"),
                          ("rolled_back", "v3", "v1")]
    rolled = model_events(hub.events)[3]
    assert "NaN" in rolled["detail"] and "serving v1" in rolled["detail"]
    served = [(v, s) for _, v, s in predictions(settings.db_path)]
    assert [s for v, s in served if v == "v3"] == [None]  # failed at the first NaN window
    assert served[-1][0] == "v1"
    assert (state(settings.db_path, "model.active"), state(settings.db_path, "model.previous")) == ("v1", None)

    # a restart gets the same retained assignment again: it is refused, not swapped in again
    hub.events.clear()
    again = start_agent(settings, PacedSource(100_000, 300.0))
    try:
        hub.events.wait_for(has_event("refused", "v3"), timeout=10)
        wait_until(lambda: again.agent.counters.windows >= 30, what="windows after restart")
        assert again.agent.model.version == "v1"
    finally:
        again.finish()
    events = model_events(hub.events)
    assert [e["event"] for e in events] == ["loaded", "refused"]
    assert "refused earlier" in events[1]["detail"] and "NaN" in events[1]["detail"]


def test_shadow_mode_logs_both_scores_and_reports_disagreement(tmp_path, broker, hub, versions):
    settings = _settings(tmp_path, broker, hub, versions, shadow_report_s=0.5)
    run = start_agent(settings, PacedSource(100_000, 500.0))
    try:
        wait_until(lambda: run.agent.counters.windows >= 10, what="windows with v1")
        hub.assign(assignment(versions.shadow, mode="shadow"))
        messages = hub.events.wait_for(has_event("shadow_report", "v2s"), timeout=10)
        assert run.agent.model.version == "v1"
    finally:
        run.finish()
    report = next(m.json() for m in messages if m.json()["event"] == "shadow_report")
    metrics = report["metrics"]
    assert report["model_version"] == "v1" and report["detail"] == "vs v1"
    assert metrics["windows"] > 0 and metrics["inference_errors"] == 0 and metrics["nan_scores"] == 0
    assert metrics["disagreement_rate"] == metrics["disagreements"] / metrics["compared"]
    assert metrics["mean_abs_score_diff"] < 1e-6  # same network; only the threshold differs
    rows = predictions(settings.db_path, "trace_id, model_version, score, decision, shadow_version, shadow_score")
    shadowed = [r for r in rows if r[4] == "v2s"]
    assert shadowed and {r[1] for r in rows} == {"v1"}
    for _trace_id, _, score, _, _, shadow_score in shadowed:
        assert shadow_score == pytest.approx(score, abs=1e-6)  # both scores in one row, one trace id
    threshold = json.loads((versions.shadow / MANIFEST_FILE).read_text())["threshold"]
    disagreeing = sum(bool(d) != (s >= threshold) for *_, d, _, s in shadowed)
    assert disagreeing > 0  # the candidate's higher threshold flags fewer windows
    assert [e["event"] for e in model_events(hub.events)][:2] == ["loaded", "loaded"]


def test_the_hubs_rollback_command(tmp_path, broker, hub, versions):
    settings = _settings(tmp_path, broker, hub, versions, health_windows=5)
    run = start_agent(settings, PacedSource(100_000, 300.0))
    try:
        wait_until(lambda: run.agent.counters.windows >= 10, what="windows with v1")
        hub.assign(assignment(versions.v2))
        hub.events.wait_for(has_event("health_ok", "v2"), timeout=10)
        hub.command(Command(ts=time.time(), cmd="rollback"))
        messages = hub.events.wait_for(has_event("rolled_back", "v2"), timeout=10)
        wait_until(lambda: run.agent.model.version == "v1", what="v1 serving")
        after = run.agent.counters.windows + 5
        wait_until(lambda: run.agent.counters.windows >= after, what="windows after the rollback")
    finally:
        run.finish()
    rolled = next(m.json() for m in messages if m.json()["event"] == "rolled_back")
    assert rolled["model_version"] == "v1" and "rolled back by the hub" in rolled["detail"]
    assert state(settings.db_path, "model.active") == "v1"
    assert predictions(settings.db_path)[-1][1] == "v1"
