"""The gate on a small, young fleet (issue 11, #5): four devices watched for under three hours, ~780 labels.

With the default 1 h split block such a fleet is a dozen blocks; the 30 % slice held a few of them, too few
failures to judge, and the candidate was filed ``rejected`` like a real gate failure. The split now adapts
(smaller blocks, then k-fold by device) and says how it split; a slice that still cannot judge is its own
status, ``insufficient_data``, never ``rejected``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.training.settings import GateSettings, TrainingSettings
from tests.hub.training.conftest import World, build_world

N_MACHINES, STEPS = 4, 1000  # 195 windows per machine, 9,700 s of traffic, 780 labels, 60 confirmed faults


@pytest.fixture(scope="module")
def young(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[World]:
    world = build_world(tmp_path_factory.mktemp("young"), initial_model_dir, n_machines=N_MACHINES, steps=STEPS)
    yield world
    world.store.close()


def test_a_small_young_fleet_gets_a_judged_verdict_and_the_split_is_recorded(young: World) -> None:
    job = young.service(settings=TrainingSettings()).retrain_now(actor="test", reason="young fleet",
                                                                 now=young.clock(), label_set_id=young.label_set_id)
    assert job.status == "succeeded", job.error
    assert job.gate_verdict in ("pass", "fail"), job.details.get("reasons")
    row = young.registry.get(job.result_version or "")
    split = (row.gate or {}).get("split") or {}
    assert split.get("method") == "device_kfold" and split["folds"] == N_MACHINES, split
    assert split["configured_block_s"] == 3600.0 and split["block_s"] < 3600.0 and split["eval_rows"] == 780, split
    assert "frozen slice has" in split["reason"] and "fewer than 200" in split["block_reason"], split
    summary = job.details["gate_summary"]
    assert summary["verdict"] == job.gate_verdict and summary["status"] == row.status
    assert summary["split"]["method"] == "device_kfold" and summary["deciding"], summary
    assert summary["numbers"]["candidate_n_pos"] == 60 and summary["numbers"]["positive_blocks"] >= 10, summary
    manifest = young.registry.manifest(row.version)
    assert manifest is not None and manifest.training.params["split_method"] == "device_kfold"


def test_a_slice_too_small_to_judge_is_insufficient_data_never_rejected(young: World) -> None:
    strict = TrainingSettings(kfold_max_folds=0, gate=GateSettings(min_positives=500))
    job = young.service(settings=strict).retrain_now(actor="test", reason="cannot be judged", now=young.clock(),
                                                     label_set_id=young.label_set_id)
    assert (job.status, job.gate_verdict) == ("succeeded", "insufficient_data"), job.error
    row = young.registry.get(job.result_version or "")
    assert row.status == "insufficient_data"
    audit = young.store.model_audit(version=row.version)
    assert (audit[-1].action, audit[-1].to_status) == ("gate", "insufficient_data")
    assert not young.registry.approved(row.version)  # never assigned, never served
    assert (row.gate or {})["split"]["method"] == "frozen_slice"
    assert job.details["gate_summary"]["status"] == "insufficient_data"
    assert any("min_positives" in d for d in job.details["gate_summary"]["deciding"])
