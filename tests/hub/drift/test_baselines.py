"""The statistics of a reference taken from the fleet (`hub.drift.baselines`), on a simulated calibrated fleet.

Six pumps, each calibrated its own way, scored by the real initial model: against the manifest's reference
every scope reads as drifted; against a reference taken from the fleet's own first window the fleet does not;
with device baselines, a temperature offset injected on two devices is flagged on those two only.
"""

from __future__ import annotations

import dataclasses
import doctest
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from hub.drift import Sketch, baselines, fleet_reports
from hub.drift.baselines import Baselines, baseline_reports, counts_sketch, healthy_rows, sketch_counts
from hub.drift.fold import device_sketches
from hub.drift.psi import psi_band
from hub.drift.report import drift_report
from hub.store.rows import StatsRow
from models.version import read_version
from shared.manifest import ModelManifest
from shared.messages import Stats
from tests.hub.drift.simfleet import CALIBRATION, INJECTED, SITE, Windows, calibrated_windows

T0 = 1_700_000_000.0
DEVICES = sorted(CALIBRATION)


def rows(stats: Sequence[Stats]) -> list[StatsRow]:
    return [StatsRow(s.msg_id, s.device_id, s.ts, s.ts, s.model_version, s.period_start, s.period_end, s.windows,
                     s.anomalies, s.samples, s.bad_readings, s.bad_rows, s.inference_errors, s.nan_scores,
                     s.feature_hist, s.score_hist, s.latency_p50_ms, s.latency_p99_ms) for s in stats]


def sketches(stats: Sequence[Stats], manifest: ModelManifest) -> dict[str, Sketch]:
    out, skipped = device_sketches(rows(stats), manifest)
    assert not skipped
    return out


@pytest.fixture(scope="module")
def manifest(initial_model_dir: Path) -> ModelManifest:
    return read_version(initial_model_dir)[0]


@pytest.fixture(scope="module")
def windows(initial_model_dir: Path) -> Windows:
    return calibrated_windows(initial_model_dir, T0)


def verdicts(pairs: Sequence[tuple[object, str]]) -> dict[str, tuple[str, str]]:
    return {r.scope: (r.verdict, src) for r, src in pairs}  # type: ignore[attr-defined]


def test_a_calibrated_fleet_reads_as_drifted_against_the_manifest(windows: Windows, manifest: ModelManifest) -> None:
    reports = fleet_reports(Sketch.from_reference(manifest.reference), sketches(windows.clean, manifest), SITE,
                            manifest.feature_names)
    assert {r.scope: r.verdict for r in reports} == {"fleet": "drift", "cohort:site-a": "drift",
                                                     "cohort:site-b": "drift",
                                                     **{f"device:{d}": "drift" for d in DEVICES}}
    assert len(reports[0].drifted_features) >= 20  # of 36: the problem an operator could not fix


def test_against_a_reference_from_the_fleet_the_fleet_does_not_drift(
    windows: Windows, manifest: ModelManifest
) -> None:
    base = Baselines.take(sketches(windows.reference, manifest), SITE)
    got = verdicts(baseline_reports(base, sketches(windows.clean, manifest), SITE, manifest.feature_names, own=False))

    assert got["fleet"] == ("no_drift", "fleet")
    assert got["cohort:site-a"] == got["cohort:site-b"] == ("no_drift", "fleet")
    # Against the fleet's reference a machine calibrated its own way still reads as drifted (own baselines fix it).
    assert got["device:dev-2"] == ("drift", "fleet")  # temperature reads 1.5 high on this one


def test_with_device_baselines_an_injected_offset_is_flagged_on_those_devices_only(
    windows: Windows, manifest: ModelManifest
) -> None:
    base = Baselines.take(sketches(windows.reference, manifest), SITE)
    names = manifest.feature_names

    clean = verdicts(baseline_reports(base, sketches(windows.clean, manifest), SITE, names, own=True))
    assert clean == {"fleet": ("no_drift", "fleet"), "cohort:site-a": ("no_drift", "cohort"),
                     "cohort:site-b": ("no_drift", "cohort"),
                     **{f"device:{d}": ("no_drift", "device") for d in DEVICES}}

    pairs = baseline_reports(base, sketches(windows.injected, manifest), SITE, names, own=True)
    drifted = {r.scope for r, _ in pairs if r.verdict == "drift"}
    assert drifted == {f"device:{d}" for d in INJECTED}
    for r, _ in pairs:
        if r.scope in drifted:
            assert r.drifted_features and all(f.startswith("temperature.") for f in r.drifted_features)


def test_a_device_without_enough_windows_of_its_own_is_compared_with_the_fleet(
    windows: Windows, manifest: ModelManifest
) -> None:
    current = sketches(windows.clean, manifest)
    base = Baselines.take({d: s for d, s in sketches(windows.reference, manifest).items() if d != "dev-0"}, SITE)
    sources = {r.scope: src for r, src in baseline_reports(base, current, SITE, manifest.feature_names, own=True)}
    assert sources["device:dev-0"] == "fleet" and sources["device:dev-1"] == "device"


def test_stored_counts_give_back_the_same_sketch(windows: Windows, manifest: ModelManifest) -> None:
    bins = [len(e) + 1 for e in manifest.reference.bin_edges]
    base = Baselines.take(sketches(windows.reference, manifest), SITE)
    back = Baselines.from_counts(base.to_counts(bins), manifest.reference)
    assert np.array_equal(back.fleet.feature_hist, base.fleet.feature_hist)
    assert np.array_equal(back.devices["dev-3"].score_hist, base.devices["dev-3"].score_hist)
    assert back.fleet.windows == base.fleet.windows == sum(s.windows for s in windows.reference)
    assert back.fleet.anomalies is None  # as a manifest's: the anomaly-rate check needs a labelled rate
    with pytest.raises(ValueError, match="bins do not match"):
        counts_sketch({**sketch_counts(base.fleet, bins), "feature_hist": [[1, 2]]}, manifest.reference)


def test_healthy_rows_leave_out_alarming_periods_and_drifted_devices(windows: Windows) -> None:
    stats = rows(windows.reference)
    alarming = dataclasses.replace(stats[0], msg_id="alarming", anomalies=stats[0].windows)  # alarms on every window
    kept = healthy_rows([*stats, alarming], max_anomaly_rate=0.5, drifted=["dev-5"])
    assert kept.alarming == 1
    assert kept.drifted == sum(1 for r in stats if r.device_id == "dev-5")
    assert len(kept.rows) == len(stats) - kept.drifted


def test_the_band_shown_is_the_threshold_used() -> None:
    ref = Sketch(np.array([[500, 500]]), np.array([1000]), windows=1000)
    cur = Sketch(np.array([[700, 300]]), np.array([1000]), windows=1000)  # PSI 0.17
    assert psi_band(0.17) == "moderate"
    strict = drift_report(ref, cur, ["x"], scope="fleet", psi_threshold=0.15)
    loose = drift_report(ref, cur, ["x"], scope="fleet", psi_threshold=0.5)
    assert (strict.features[0].band, strict.verdict) == ("significant", "drift")
    assert (loose.features[0].band, loose.verdict) == ("stable", "no_drift")  # not "significant" and not drifted


def test_docstring_examples_run() -> None:
    result = doctest.testmod(baselines)
    assert result.attempted > 0 and result.failed == 0
