"""Where the public datasets live, and the column names of their files that more than one package reads."""

from __future__ import annotations

import os
from pathlib import Path

CMAPSS_SENSORS = ["op1", "op2", "op3", *(f"s{i}" for i in range(1, 22))]
# Ground-truth columns of public datasets: labels must never be fed to the model as sensors.
LABEL_COLUMNS = frozenset({"anomaly", "changepoint", "label", "labels", "target", "fault", "failure",
                           "machine failure", "rul"})

def default_datasets_dir() -> Path:
    """Where the staged public datasets live: ``FLEETLOOP_DATASETS``, else ``<repo>/../shared/datasets``."""
    env = os.environ.get("FLEETLOOP_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
