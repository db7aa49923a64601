"""A model made elsewhere is judged by the retrain's gate on the frozen slice (issue 11, #6): with labels, the
verdict is real; a model reading other windows cannot be compared and is refused unless its gate is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.errors import RetrainError
from shared.manifest import MANIFEST_FILE
from tests.hub.rollout.test_service import variant
from tests.hub.training.conftest import World


def test_a_hand_made_model_is_gated_on_the_frozen_slice(drifted: World, initial_model_dir: Path,
                                                        tmp_path: Path) -> None:
    service = drifted.service()
    same = variant(initial_model_dir, tmp_path / "v1-copy", "v1-copy")  # v1's bytes: no worse anywhere
    registered = service.register_model(same, actor="operator:ana", reason="a lab copy of v1")
    row = registered.row
    assert (row.status, (row.gate or {})["verdict"]) == ("candidate", "pass"), (row.gate or {}).get("reasons")
    split = (row.gate or {})["split"]
    assert split["method"] == "frozen_slice" and split["eval_rows"] > 0 and split["block_s"] == 600.0
    assert (row.gate or {})["incumbent_version"] == "v1" and drifted.registry.rollout_refusal(row.version) is None
    assert registered.summary is not None and registered.summary["verdict"] == "pass"
    assert [a.action for a in drifted.store.model_audit(version=row.version)] == ["registered", "gate"]


def test_a_model_with_other_inputs_is_refused_unless_its_gate_is_skipped(drifted: World, initial_model_dir: Path,
                                                                         tmp_path: Path) -> None:
    other = variant(initial_model_dir, tmp_path / "v-wide", "v-wide")
    manifest = json.loads((other / MANIFEST_FILE).read_text())
    manifest["window"]["size"] += 10
    (other / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(RetrainError, match="other windows or features"):
        drifted.service().register_model(other, actor="operator:ana", reason="wider windows")
    assert drifted.store.model_version("v-wide") is None  # nothing registered
    skipped = drifted.service().register_model(other, actor="operator:ana", reason="wider windows, bench-tested",
                                               skip_gate=True)
    assert (skipped.row.status, (skipped.row.gate or {})["verdict"]) == ("candidate", "skipped")
