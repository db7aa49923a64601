"""Simulated technicians: ground truth replayed exactly, seeded label noise, the delay, the annotations made."""

from __future__ import annotations

import doctest
from dataclasses import dataclass

import numpy as np
import pytest

import sim.technicians
from shared.features import WindowSpec
from shared.messages import Sample
from sim import SENSORS, MachineConfig, SensorOffset, make_fleet, simulate_windows
from sim.technicians import FAULT_TYPE, GroundTruth, SimDevice, SimulatedTechnician

SPEC = WindowSpec(sensors=list(SENSORS), size=30, step=5)
T0, RATE, HORIZON = 1_700_000_000.0, 100.0, 100
DRIFT = SensorOffset(sensor="vibration", offset=-1.0, start_t=400)


@dataclass(frozen=True)
class Pred:
    trace_id: str
    device_id: str
    ts: float
    window_end: float
    model_version: str | None = "v1"


def fleet_and_predictions(n_machines: int = 4, steps: int = 1500, seed: int = 5):
    """The `simulate_windows` fleet as devices of a live run, and one prediction per window it cut."""
    ds = simulate_windows(n_machines, steps, seed, SPEC, HORIZON, drifts=[DRIFT])
    devices = {m.machine_id: SimDevice(m.machine_id, m.seed, m.config, (DRIFT,), T0, RATE)
               for m in make_fleet(n_machines, seed)}
    preds = [Pred(f"{d}-{int(t)}", str(d), devices[str(d)].ts_of(int(t)) + 0.5, devices[str(d)].ts_of(int(t)))
             for d, t in zip(ds.machine_id, ds.window_end, strict=True)]
    return ds, devices, preds


def test_exact_technicians_give_the_simulator_s_labels() -> None:
    ds, devices, preds = fleet_and_predictions()
    tech = SimulatedTechnician("tech-ana", delay_s=0.0, error_rate=0.0, seed=1, fleet=devices, horizon=HORIZON)
    notes = tech.label(preds, now=T0 + 1e6)
    assert len(notes) == len(ds) == 4 * ((1500 - 30) // 5 + 1)
    labels = np.array([n.label == "fault" for n in notes])
    assert np.array_equal(labels, ds.y.astype(bool))
    assert 0 < labels.sum() < len(labels)  # both classes: the comparison means something
    assert [n.trace_id for n in notes] == [p.trace_id for p in preds]
    assert {(n.signal, n.confidence, n.technician_id, n.model_version) for n in notes} == {
        ("confirmed", 1.0, "tech-ana", "v1")}
    assert {n.fault_type for n in notes if n.label == "fault"} == {FAULT_TYPE}
    assert {n.fault_type for n in notes if n.label == "no_fault"} == {None}


def test_ground_truth_is_the_machine_s_rul_at_the_window_s_last_reading() -> None:
    machine = make_fleet(3, seed=9)[1]
    trace = machine.run(12_000)  # several lives, past the first cached chunk
    device = SimDevice(machine.machine_id, machine.seed, machine.config, start_ts=T0, rate=RATE)
    truth = GroundTruth()
    for step in (11_999, 0, 4095, 4096, 7_777):  # out of order: a late step first, then early ones
        assert truth.rul_at(device, step) == int(trace.rul[step])
        end = device.ts_of(step)
        assert truth.truth_for(device.device_id, machine.config, machine.seed, (), T0, RATE, end, HORIZON) == (
            trace.rul[step] <= HORIZON)
    assert truth.rul_at(device, int(np.flatnonzero(trace.failed)[0])) == 0


def test_drifts_are_replayed_and_change_readings_not_lives() -> None:
    config = MachineConfig(life_steps=(300, 600))
    plain = SimDevice("m", 4, config, start_ts=T0, rate=RATE)
    drifted = SimDevice("m", 4, config, (DRIFT,), start_ts=T0, rate=RATE)
    truth = GroundTruth()
    assert [truth.rul_at(plain, t) for t in range(0, 3000, 7)] == [truth.rul_at(drifted, t) for t in range(0, 3000, 7)]


def test_a_noisy_technician_flips_a_seeded_fifth_of_the_labels() -> None:
    ds, devices, preds = fleet_and_predictions()
    tech = SimulatedTechnician("tech-bo", delay_s=0.0, error_rate=0.2, seed=7, fleet=devices, horizon=HORIZON)
    labels = np.array([n.label == "fault" for n in tech.label(preds, now=T0 + 1e6)])
    flipped = int(np.sum(labels != ds.y.astype(bool)))
    assert flipped == 263  # golden: seed 7, this fleet (22.3% of 1180)
    assert flipped / len(labels) == pytest.approx(0.2, abs=0.035)  # three binomial standard deviations
    assert [n.confidence for n in tech.label(preds[:3], now=T0 + 1e6)] == pytest.approx([0.8] * 3)
    other = SimulatedTechnician("tech-cy", delay_s=0.0, error_rate=0.2, seed=8, fleet=devices, horizon=HORIZON)
    other_labels = np.array([n.label == "fault" for n in other.label(preds, now=T0 + 1e6)])
    assert not np.array_equal(labels, other_labels)  # another seed, other mistakes


def test_mistakes_depend_on_the_window_not_on_the_order_or_batching() -> None:
    _, devices, preds = fleet_and_predictions(n_machines=2, steps=800)
    tech = SimulatedTechnician("tech-bo", delay_s=0.0, error_rate=0.3, seed=3, fleet=devices, horizon=HORIZON)
    once = {n.trace_id: (n.label, n.annotation_id) for n in tech.label(preds, now=T0 + 1e6)}
    backwards = tech.label(list(reversed(preds)), now=T0 + 1e6)
    in_pieces = [n for i in range(0, len(preds), 17) for n in tech.label(preds[i:i + 17], now=T0 + 1e6)]
    assert {n.trace_id: (n.label, n.annotation_id) for n in backwards} == once
    assert {n.trace_id: (n.label, n.annotation_id) for n in in_pieces} == once
    assert len({a for _, a in once.values()}) == len(preds)  # one annotation id per trace


def test_only_predictions_older_than_the_delay_are_labelled() -> None:
    _, devices, preds = fleet_and_predictions(n_machines=1, steps=400)
    tech = SimulatedTechnician("tech-ana", delay_s=30.0, error_rate=0.0, seed=1, fleet=devices, horizon=HORIZON)
    now = preds[40].ts + 30.0
    first = tech.label(preds, now=now)
    assert [n.trace_id for n in first] == [p.trace_id for p in preds[:41]]
    assert all(n.ts == now for n in first)
    later = tech.label(preds, now=preds[-1].ts + 30.0)
    assert len(later) == len(preds)
    assert tech.label(preds, now=preds[0].ts + 29.9) == []


def test_wire_predictions_are_labelled_too() -> None:
    machine = make_fleet(1, seed=2)[0]
    device = SimDevice(machine.machine_id, machine.seed, machine.config, start_ts=T0, rate=RATE)
    rul = machine.run(2000).rul
    step = int(np.flatnonzero(rul <= HORIZON)[0])  # the first window that should be called a fault
    sample = Sample(device_id=machine.machine_id, ts=T0 + 30.0, model_version="v7", trace_id="t-1",
                    window_start=device.ts_of(step - 29), window_end=device.ts_of(step), score=0.1,
                    threshold=0.5, decision=False, features=[0.0] * 36, reason="random")
    tech = SimulatedTechnician("tech-ana", delay_s=1.0, error_rate=0.0, seed=1, fleet=[device], horizon=HORIZON)
    (note,) = tech.label([sample], now=T0 + 60.0)
    assert (note.trace_id, note.device_id, note.label, note.model_version) == ("t-1", machine.machine_id, "fault", "v7")
    assert tech.fails(machine.machine_id, device.ts_of(step)) and not tech.fails(machine.machine_id,
                                                                                 device.ts_of(step - 1))


def test_unknown_devices_and_times_before_the_start_are_refused() -> None:
    device = SimDevice("m-1", 1, start_ts=T0, rate=RATE)
    tech = SimulatedTechnician("tech-ana", delay_s=0.0, error_rate=0.0, seed=1, fleet=[device])
    with pytest.raises(KeyError, match="does not look after device 'm-2'"):
        tech.label([Pred("t", "m-2", T0, T0)], now=T0 + 1)
    with pytest.raises(ValueError, match="not a reading time"):
        tech.label([Pred("t", "m-1", T0, T0 - 1.0)], now=T0 + 1)
    with pytest.raises(ValueError):
        SimulatedTechnician("tech-ana", delay_s=0.0, error_rate=1.5, seed=1)
    assert SimDevice("m", 1, start_ts=10.0, rate=0.0).step_at(13.0) == 3  # unpaced: one reading a second


def test_doctests() -> None:
    assert doctest.testmod(sim.technicians).failed == 0
