"""The random baseline slice is drawn from every window, alarmed or not, so the hub's slice stays unbiased."""

from __future__ import annotations

from agent.app import build_agent
from agent.pipeline.sampling import Sampler
from agent.settings import AgentSettings
from hub.store.rows import IngestRecord
from hub.store.sqlite import SqliteHubStore
from shared.codec import decode
from shared.messages import Anomaly, Sample
from tests.agent.helpers import FAST_LIVES


def _messages(agent) -> list[Anomaly | Sample]:
    out: list[Anomaly | Sample] = []
    for row in agent.db.due_outbox(1e12, 100_000):
        if row.topic.endswith("/anomaly"):
            out.append(decode(Anomaly, row.payload))
        elif row.topic.endswith("/sample"):
            out.append(decode(Sample, row.payload))
    return out


def run_agent(tmp_path, initial_model_dir, sample_rate: float) -> list[Anomaly | Sample]:
    settings = AgentSettings(device_id="dev-s", dev_mode=True, data_dir=tmp_path / f"a{sample_rate}",
                             initial_model=initial_model_dir, sample_rate=sample_rate,
                             source={"kind": "sim", "rate": 0, "seed": 3, "sim_config": FAST_LIVES})
    agent = build_agent(settings, connect=False)
    agent.run(max_windows=600)
    return _messages(agent)


def test_every_window_is_drawn_at_the_same_rate_and_drawn_anomalies_are_marked(tmp_path, initial_model_dir):
    every = run_agent(tmp_path, initial_model_dir, sample_rate=1.0)
    anomalies = [m for m in every if isinstance(m, Anomaly)]
    samples = [m for m in every if isinstance(m, Sample)]
    assert anomalies and samples  # the fast lives fail: both kinds occur
    assert all(a.sampled for a in anomalies) and all(s.reason == "random" for s in samples)
    assert len(every) == 600  # every window once: nothing sent twice

    none = run_agent(tmp_path, initial_model_dir, sample_rate=0.0)
    assert [m for m in none if isinstance(m, Anomaly)] and not any(
        m.sampled for m in none if isinstance(m, Anomaly))


def test_the_random_slice_keeps_its_raw_windows_beside_the_alarms(tmp_path, initial_model_dir):
    """The random slice's readings are what the hub learns regime statistics from: each drawn window keeps its raw
    window (feature set 1: the window alone, no `service`), marked apart from the alarms' ring."""
    settings = AgentSettings(device_id="dev-s", dev_mode=True, data_dir=tmp_path, initial_model=initial_model_dir,
                             sample_rate=0.3, raw_windows_keep=1000,
                             source={"kind": "sim", "rate": 0, "seed": 3, "sim_config": FAST_LIVES})
    agent = build_agent(settings, connect=False)
    agent.run(max_windows=400)
    reported = dict(agent.db.conn.execute("SELECT trace_id, reported FROM predictions").fetchall())
    kept = dict(agent.db.conn.execute("SELECT trace_id, alarm FROM raw_windows").fetchall())
    assert set(kept) == {t for t, why in reported.items() if why in ("anomaly", "random")}
    assert {kept[t] for t, why in reported.items() if why == "random"} == {0}
    assert {kept[t] for t, why in reported.items() if why == "anomaly"} == {1}
    drawn = next(t for t, why in reported.items() if why == "random")
    message = agent.exchange.raw_window(drawn)
    size = agent.model.manifest.window.size
    assert message.available and message.service is None and len(message.timestamps) == size
    agent.db.close()


def test_the_hub_counts_drawn_anomalies_in_its_random_slice_but_queues_them_as_anomalies(tmp_path):
    common = {"device_id": "d", "ts": 1.0, "window_start": 0.0, "window_end": 1.0, "score": 0.9, "threshold": 0.5,
              "decision": True, "features": [0.1]}
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        store.ingest_batch([IngestRecord(Anomaly(trace_id="drawn", sampled=True, **common), 1.0),
                            IngestRecord(Anomaly(trace_id="alarm", **common), 1.0)])
        rows = {p.trace_id: p for p in store.predictions_by_trace(["drawn", "alarm"])}
        assert (rows["drawn"].kind, rows["drawn"].reason, rows["alarm"].reason) == ("anomaly", "random", None)
        assert {p.trace_id for p in store.unlabelled_predictions("anomaly")} == {"drawn", "alarm"}
        assert store.unlabelled_predictions("random") == []
    finally:
        store.close()


def test_low_confidence_samples_are_rate_limited_by_a_token_bucket():
    now = [0.0]
    sampler = Sampler(0.0, 2, "dev:1", clock=lambda: now[0])
    near = {"threshold": 0.5, "margin": 0.1}
    assert [sampler.reason(0.45, False, **near) for _ in range(3)] == ["low_confidence", "low_confidence", None]
    assert sampler.reason(0.9, False, **near) is None  # far from the threshold
    assert sampler.reason(0.55, True, **near) is None  # an anomaly goes anyway: never a low-confidence sample
    now[0] = 30.0  # half a minute refills one of the two tokens
    assert [sampler.reason(0.45, False, **near) for _ in range(2)] == ["low_confidence", None]


def test_the_random_slice_is_seeded_per_device():
    samplers = [Sampler(0.3, 0, seed) for seed in ("a", "a", "b")]
    draws = [[sampler.reason(0.0, False, 0.5, 0.0) for _ in range(50)] for sampler in samplers]
    assert draws[0] == draws[1] != draws[2]
    assert set(draws[0]) == {"random", None}
