"""The evaluation fleet plan: seeded engine roles, balanced gateways, feedback first, labels within budget."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from agent.sources.replay import CmapssSource
from fleetloop.evaluation.plan import (
    engine_lengths,
    label_offset,
    label_share,
    labelled,
    plan_fleet,
    windows_of,
    write_replay,
)
from fleetloop.evaluation.settings import config_for
from shared.errors import ConfigError, SourceError
from shared.features import WindowSpec
from shared.wire import replace
from tests.evaluation.synthetic import synthetic_rows, write_cmapss
from tests.fixtures.data import require_files

WINDOW = WindowSpec(sensors=["s1"], size=5, step=1)


def lengths(n: int, seed: int = 0) -> dict[int, int]:
    rng = np.random.default_rng(seed)
    return {u: int(rng.integers(128, 379)) for u in range(1, n + 1)}


def test_roles_are_seeded_disjoint_and_cover_the_chosen_engines() -> None:
    plan = plan_fleet(lengths(60), devices=4, seed=3)
    assert sorted(plan.feedback_units + plan.evaluation_units) == list(range(1, 61))
    assert len(plan.feedback_units) == len(plan.evaluation_units) == 30
    assert plan_fleet(lengths(60), devices=4, seed=3) == plan
    assert plan_fleet(lengths(60), devices=4, seed=4).feedback_units != plan.feedback_units
    subset = plan_fleet(lengths(60), devices=2, seed=3, n_engines=20)
    assert len(subset.engines) == 20 and set(subset.feedback_units) <= set(range(1, 61))


def test_every_gateway_replays_its_feedback_engines_first_and_loads_are_balanced() -> None:
    sizes = lengths(100, seed=1)
    plan = plan_fleet(sizes, devices=5, seed=9)
    assert [g.device_id for g in plan.gateways] == [f"gw-{i}" for i in range(5)]
    for g in plan.gateways:
        roles = [e.feedback for e in g.engines]
        assert roles == sorted(roles, reverse=True) and any(roles) and not all(roles)
        offsets = g.offsets()
        assert offsets[g.engines[0].unit] == 0 and sum(e.cycles for e in g.engines) == g.cycles
        assert all(offsets[b.unit] == offsets[a.unit] + a.cycles for a, b in itertools.pairwise(g.engines))
    loads = [g.cycles for g in plan.gateways]
    assert max(loads) - min(loads) <= 2 * max(sizes.values())  # longest-first dealing, per role


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"devices": 0}, "--devices"), ({"devices": 11}, "--devices"), ({"devices": 2, "n_engines": 1}, "--engines"),
    ({"devices": 2, "feedback_fraction": 1.0}, "feedback fraction"),
])
def test_impossible_fleets_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan_fleet(lengths(20), seed=1, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("budget", [0.05, 0.25, 0.4])
@pytest.mark.parametrize("step", [1, 2, 3])
def test_labels_never_exceed_the_budget_of_the_fleets_predictions(seed: int, budget: float, step: int) -> None:
    window = replace(WINDOW, step=step)
    plan = plan_fleet(lengths(40, seed), devices=3, seed=seed)
    share = label_share(plan, window, budget)
    sent = sum(len(labelled(windows_of(e.cycles, window), share, label_offset(seed, e.unit)))
               for e in plan.engines if e.feedback)
    total = sum(windows_of(e.cycles, window) for e in plan.engines)
    assert sent <= budget * total
    assert sent >= budget * total - 2 * len(plan.feedback_units)  # and uses it, up to rounding per engine


def test_labelled_windows_are_evenly_spread() -> None:
    picked = labelled(200, 0.3, 0.42)
    assert len(picked) == 60 and np.all(np.diff(picked) <= 4) and np.all(np.diff(picked) >= 3)
    assert labelled(7, 1.0, 0.5).tolist() == list(range(7)) and len(labelled(0, 0.5, 0.1)) == 0
    assert 0.0 <= label_offset(1, 5) < 1.0 and label_offset(1, 5) == label_offset(1, 5) != label_offset(2, 5)


def test_a_gateways_replay_file_holds_its_engines_in_its_order(tmp_path: Path) -> None:
    source = write_cmapss(tmp_path / "train.txt", synthetic_rows(8, seed=4, min_life=10, max_life=20))
    sizes = engine_lengths(source)
    assert sorted(sizes) == list(range(1, 9)) and all(10 <= n <= 20 for n in sizes.values())
    plan = plan_fleet(sizes, devices=2, seed=5)
    gateway = plan.gateways[1]
    out = write_replay(source, gateway, tmp_path / "gw" / "replay.txt")
    readings = list(CmapssSource(out))
    order = [r.unit for i, r in enumerate(readings) if i == 0 or readings[i - 1].unit != r.unit]
    assert order == [str(e.unit) for e in gateway.engines]
    assert len(readings) == gateway.cycles
    with pytest.raises(SourceError):
        engine_lengths(tmp_path / "missing.txt")


def test_fast_plans_every_cmapss_fleet_file(datasets_dir: Path) -> None:
    """`--fast` on any training file: FD001 has 100 engines, fewer than the profile's 140 (it used to fail)."""
    names = ("train_FD001.txt", "train_FD002.txt")
    folder = require_files(datasets_dir / "cmapss", names, "C-MAPSS")
    for name in sorted(p.name for p in folder.glob("train_FD00*.txt")):
        config = config_for("fast", folder, fleet=name)
        found = engine_lengths(config.fleet_path)
        plan = plan_fleet(found, devices=config.devices, seed=config.seed, n_engines=config.n_engines(len(found)))
        assert len(plan.engines) == min(len(found), 140), name
        assert len(plan.gateways) == 5 and all(g.engines for g in plan.gateways), name
