"""v1's drift reference, re-taken from the story fleet's own healthy traffic.

The initial recipe's reference describes the thirty machines it trained on. A dozen machines are not those
thirty: against the recipe's reference their fleet already reads as drifted (pressure.max PSI ~0.9) before
anything is injected. So the demo's v1 keeps its ONNX model and threshold and takes its reference bins and
histograms from the same devices, simulated without drift, as a plant would after commissioning.

The hub now does this for an operator (`POST /drift/reference`, `hub.drift.service.DriftService.take_reference`:
a stored, audited reference from the fleet's own stats, over the same bins). The demo keeps this copy of v1
until issue 13 moves the story onto the product feature: its golden numbers depend on this reference.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from models.onnx_export import onnx_scores, onnx_session
from models.reference import reference_from_features
from models.version import read_version
from shared.features import extract, sliding_windows
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE
from sim.machine import SimulatedMachine
from sim.technicians import SimDevice

__all__ = ["rebase_reference"]


def rebase_reference(initial: Path, devices: Iterable[SimDevice], out: Path, *, steps: int = 10_000) -> Path:
    """Copy the version in `initial` to `out` with its drift reference taken from `devices` run undrifted
    for `steps` readings each (same ids, seeds and machine configs). The copy is unsigned: the registry signs it.
    """
    manifest, onnx = read_version(initial)
    parts = [extract(sliding_windows(SimulatedMachine(d.device_id, d.seed, d.config).run(steps).values,
                                     manifest.window))
             for d in devices]
    if not parts:
        raise ValueError("a reference needs at least one device")
    X = np.concatenate(parts)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(initial, out)
    (out / SIGNATURE_FILE).unlink(missing_ok=True)
    data = json.loads((out / MANIFEST_FILE).read_text())
    data["reference"] = reference_from_features(X, onnx_scores(onnx_session(onnx), X)).model_dump(mode="json")
    (out / MANIFEST_FILE).write_text(json.dumps(data, indent=1))
    return out
