"""Fleet drift detection: pure functions over mergeable histogram sketches (numpy and scipy only).

One statistic per module, each a pure function returning a small frozen result:

- `psi`: Population Stability Index and its 0.1 / 0.2 bands.
- `divergence`: Jensen-Shannon distance (base 2, in [0, 1]).
- `stattests`: chi-square test of homogeneity, a KS-style test on binned counts, two-proportion z-test.
- `fdr`: Benjamini-Hochberg adjusted p-values.
- `edges`: reference bin edges from training values (handles constant features).
- `sketch`: the `Sketch` the hub merges from device `Stats` messages.
- `fold`: stats rows folded into one sketch per device over a manifest's bins.
- `baselines`: references taken from the fleet's own healthy stats; device and cohort baselines.
- `report`: `drift_report` and `fleet_reports`, which gate significance by effect size.
- `results`: the frozen `DriftReport` they return (``to_dict()`` for JSON).

No I/O, no clock, no database: callers pass sketches in and store the `DriftReport` they get back.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.drift.report import drift_report, fleet_reports
    from hub.drift.results import AnomalyRateChange, DriftReport, FeatureDrift, ScoreDrift
    from hub.drift.sketch import Sketch, merge, merge_sketches

# Loaded on first use (PEP 562): `hub.drift.psi` alone is imported by light modules (the rollout's health check,
# which the hub's settings and so every `fleetloop hub` command import), and `report` brings scipy with it.
_LAZY = {"drift_report": "report", "fleet_reports": "report", "AnomalyRateChange": "results",
         "DriftReport": "results", "FeatureDrift": "results", "ScoreDrift": "results", "Sketch": "sketch",
         "merge": "sketch", "merge_sketches": "sketch"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"hub.drift.{_LAZY[name]}"), name)


__all__ = [
    "AnomalyRateChange",
    "DriftReport",
    "FeatureDrift",
    "ScoreDrift",
    "Sketch",
    "drift_report",
    "fleet_reports",
    "merge",
    "merge_sketches",
]
