"""Sensor sources against real files and a real broker: C-MAPSS and SKAB replays, malformed input, MQTT."""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from agent.sources import SensorSource
from agent.sources.mqtt import MqttSource
from agent.sources.replay import CmapssSource, CsvSource
from fleetloop.devbroker import HUB_USER, DevBroker
from infra.datasets import CMAPSS_SENSORS
from shared.errors import SourceError
from tests.fixtures.broker import Clients, publish

SKAB_SENSORS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
                "Thermocouple", "Voltage", "Volume Flow RateRMS"]


# --- C-MAPSS ---------------------------------------------------------------------------------------------


@pytest.mark.dataset
def test_cmapss_fd001_replays_every_cycle_of_100_engines(datasets_dir: Path) -> None:
    source = CmapssSource(datasets_dir / "cmapss" / "train_FD001.txt")
    assert isinstance(source, SensorSource)
    assert source.sensors == CMAPSS_SENSORS and len(source.sensors) == 24
    readings = list(source)
    assert len(readings) == 20_631
    assert len({r.unit for r in readings}) == 100
    assert source.bad_rows == 0 and source.exhausted and source.read(0.0) is None
    first = readings[0]
    assert (first.unit, first.ts) == ("1", 1.0)
    assert first.values.dtype == np.float64 and first.values.shape == (24,)
    assert first.values[:4].tolist() == [-0.0007, -0.0004, 100.0, 518.67]
    # cycles count up within an engine, so windows never need to look across units
    assert all(b.ts == a.ts + 1 for a, b in itertools.pairwise(readings) if a.unit == b.unit)


@pytest.mark.dataset
def test_cmapss_unit_filter(datasets_dir: Path) -> None:
    with CmapssSource(datasets_dir / "cmapss" / "train_FD001.txt", units=[3, "7"]) as source:
        units = {r.unit for r in source}
    assert units == {"3", "7"}


def test_cmapss_malformed_rows_are_counted_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = "1 {} 0.1 0.2 100.0 " + " ".join(["1.5"] * 21)
    path = tmp_path / "train.txt"
    path.write_text("\n".join([
        good.format(1),
        "1 2 0.1 0.2",  # too few columns
        good.format(3).replace("1.5", "abc", 1),  # not a number
        "",  # blank lines are not rows
        good.format(4) + " 9.9",  # too many columns
        good.format(5),
    ]) + "\n")
    source = CmapssSource(path)
    with caplog.at_level(logging.WARNING, logger="agent.sources.replay"):
        readings = list(source)
    assert [r.ts for r in readings] == [1.0, 5.0]
    assert source.bad_rows == 3
    assert "train.txt:2" in caplog.text and "train.txt:3" in caplog.text


def test_a_hold_file_lets_the_replay_release_only_what_it_allows(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("".join(f"1 {c} 0.1 0.2 100.0 " + " ".join(["1.5"] * 21) + "\n" for c in range(1, 6)))
    hold = tmp_path / "hold"
    source = CmapssSource(path, hold_path=hold)
    assert source.read(0.02) is None and not source.exhausted  # no file yet: nothing released, still running
    hold.write_text("2")
    assert [r.ts for r in (source.read(0.02), source.read(0.02))] == [1.0, 2.0]  # type: ignore[union-attr]
    assert source.read(0.02) is None and source.released == 2
    hold.write_text("99")
    assert [r.ts for r in source] == [3.0, 4.0, 5.0] and source.exhausted


def test_missing_files_raise_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        CmapssSource(tmp_path / "nope.txt")
    with pytest.raises(SourceError, match="does not exist"):
        CsvSource(tmp_path / "nope.csv")


def test_rate_paces_the_replay(tmp_path: Path) -> None:
    path = tmp_path / "paced.csv"
    path.write_text("ts,a\n" + "".join(f"{i},{i}\n" for i in range(5)))
    source = CsvSource(path, time_column="ts", rate=50.0)
    start = time.monotonic()
    assert len(list(source)) == 5
    assert time.monotonic() - start >= 4 / 50 * 0.9
    slow = CsvSource(path, time_column="ts", rate=0.5)
    assert slow.read(0.01) is not None  # the first reading is due at once
    assert slow.read(0.01) is None  # the next one only in 2 s: not ready yet, and read did not block
    slow.close()


# --- CSV (SKAB) ------------------------------------------------------------------------------------------


@pytest.mark.dataset
def test_skab_csv_has_the_sensors_and_no_label_columns(datasets_dir: Path) -> None:
    source = CsvSource(datasets_dir / "skab" / "valve1" / "0.csv")
    assert source.delimiter == ";"
    assert source.sensors == SKAB_SENSORS
    readings = list(source)
    assert len(readings) == 1147 and source.bad_rows == 0
    assert readings[0].ts == pytest.approx(1583748873.0)  # 2020-03-09 10:14:33, naive → UTC
    assert readings[1].ts - readings[0].ts == 1.0
    assert readings[0].values.tolist()[:3] == [0.0265878, 0.0401113, 1.3302]


def test_csv_malformed_rows_are_counted_and_empty_fields_are_nan(tmp_path: Path) -> None:
    path = tmp_path / "plant.csv"
    path.write_text(
        "time,unit,temp,rpm,Label\n"
        "2024-01-01T00:00:00+00:00,pump-1,70.5,1500,0\n"
        "2024-01-01T00:00:01+00:00,pump-1,,1510,0\n"  # empty field: NaN, still a reading
        "2024-01-01T00:00:02+00:00,pump-1,71.0\n"  # too few fields
        "not a time,pump-1,71.0,1500,0\n"
        "2024-01-01T00:00:04+00:00,pump-2,hot,1500,1\n"  # unparsable number
        "\n"
        "2024-01-01T00:00:05+00:00,pump-2,72.0,1490,1\n"
    )
    source = CsvSource(path, time_column="time", unit_column="unit")
    assert source.sensors == ["temp", "rpm"]  # "Label" is ground truth, not a sensor
    readings = list(source)
    assert source.bad_rows == 3
    assert [r.unit for r in readings] == ["pump-1", "pump-1", "pump-2"]
    assert [r.ts - readings[0].ts for r in readings] == [0.0, 1.0, 5.0]
    assert math.isnan(readings[1].values[0]) and readings[1].values[1] == 1510.0


def test_csv_explicit_sensors_delimiter_and_time_format(tmp_path: Path) -> None:
    path = tmp_path / "tabs.tsv"
    path.write_text("when\ta\tb\tc\n09/03/2020 10:14\t1\t2\t3\n09/03/2020 10:15\t4\t5\t6\n")
    source = CsvSource(path, time_column="when", sensors=["c", "a"], delimiter="\t",
                       time_format="%d/%m/%Y %H:%M", unit="rig-1")
    readings = list(source)
    assert [r.values.tolist() for r in readings] == [[3.0, 1.0], [6.0, 4.0]]
    assert readings[1].ts - readings[0].ts == 60.0 and readings[0].unit == "rig-1"
    with pytest.raises(SourceError, match="no sensor column 'd'"):
        CsvSource(path, time_column="when", sensors=["d"])
    with pytest.raises(SourceError, match="no time column 'datetime'"):
        CsvSource(path)


# --- MQTT --------------------------------------------------------------------------------------------------


def test_mqtt_source_reads_json_readings_and_counts_bad_payloads(
    broker: DevBroker, mqtt_clients: Clients
) -> None:
    topic = f"{broker.prefix}/test-sensors/{uuid.uuid4().hex[:8]}"
    source = MqttSource(broker.host, broker.port, topic, ["temp", "rpm"], username=HUB_USER,
                        password=broker.password(HUB_USER))
    try:
        assert isinstance(source, SensorSource)
        assert source.wait_subscribed(5.0)
        sender = mqtt_clients.connect(broker, HUB_USER)
        payloads: list[bytes | str] = [
            json.dumps({"ts": 1.0, "values": {"temp": 70.5, "rpm": 1500}, "unit": "pump-1"}),
            b"\xff not json",
            json.dumps([1, 2]),
            json.dumps({"ts": "yesterday", "values": {}}),
            json.dumps({"ts": 2.0, "values": {"temp": "hot"}}),
            json.dumps({"ts": 3.0, "values": {"temp": True}}),
            json.dumps({"ts": 4.0, "values": {"temp": None, "extra": 1}}),  # null → NaN, unknown ignored
        ]
        for payload in payloads:
            publish(sender, topic, payload)
        first = source.read(5.0)
        second = source.read(5.0)
        assert first is not None and second is not None
        assert (first.ts, first.unit, first.values.tolist()) == (1.0, "pump-1", [70.5, 1500.0])
        assert second.ts == 4.0 and second.unit is None and np.isnan(second.values).all()
        assert source.bad_rows == 5
        assert source.read(0.05) is None and not source.exhausted
    finally:
        source.close()
    assert source.exhausted


def test_mqtt_source_drops_the_oldest_when_its_queue_is_full(broker: DevBroker, mqtt_clients: Clients) -> None:
    topic = f"{broker.prefix}/test-sensors/{uuid.uuid4().hex[:8]}"
    source = MqttSource(broker.host, broker.port, topic, ["x"], username=HUB_USER,
                        password=broker.password(HUB_USER), max_queue=3)
    try:
        assert source.wait_subscribed(5.0)
        sender = mqtt_clients.connect(broker, HUB_USER)
        for i in range(5):
            publish(sender, topic, json.dumps({"ts": float(i), "values": {"x": i}}))
        deadline = time.monotonic() + 5
        while source.received < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.dropped == 2
        assert [r.ts for r in iter(lambda: source.read(0.0), None)] == [2.0, 3.0, 4.0]
    finally:
        source.close()


def test_sim_source_applies_drifts_from_settings() -> None:
    from agent.app import build_source
    from agent.settings import AgentSettings

    def first_readings(drifts):
        settings = AgentSettings(device_id="dev-d", dev_mode=True, source={
            "kind": "sim", "rate": 0, "seed": 3, "limit": 20, "drifts": drifts})
        source = build_source(settings)
        return [source.read(0).values.copy() for _ in range(20)]  # type: ignore[union-attr]

    plain = first_readings([])
    drifted = first_readings([{"kind": "sensor_offset", "sensor": "pressure", "offset": 5.0, "start_t": 10}])
    column = ["temperature", "vibration", "pressure", "flow", "current", "rpm"].index("pressure")
    assert [round(b[column] - a[column], 9) for a, b in zip(plain, drifted, strict=True)] == [0.0] * 10 + [5.0] * 10
