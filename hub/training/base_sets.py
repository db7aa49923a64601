"""Base sets: the labelled data a retrain starts from before field feedback is added.

A base set is named by a string:

- ``sim`` — the project's simulator, replaying the simulator settings the parent's manifest records (the
  default, and what every model built by `models.initial` descends from);
- ``cmapss:<file>`` — the engines of a NASA C-MAPSS training file, labelled "fails within `horizon` cycles"
  from each engine's last cycle (`models.cmapss`). A bare file name is looked up in the datasets folder's
  ``cmapss/`` (`agent.sources.replay.default_datasets_dir`, ``FLEETLOOP_DATASETS``); a path is used as is.

Which one: `TrainingSettings.base_set` when set, else the parent's: its ``base_set`` training parameter
(`models.cmapss` records it), else a ``cmapss:…`` entry of its sources (a retrain records its base set's
description there, so a grandchild finds it too), else ``sim``. Base rows always travel as the training set's
``sim`` source, weighted by `TrainingSettings.sim_weight`, apart from field feedback; their description in
the manifest's sources says which data they are.

No store: a base set is simulated or read from a file on disk (the C-MAPSS datasets folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hub.training.dataset import SimSpec, SourceRows, base_rows, sim_spec
from hub.training.errors import RetrainError
from hub.training.settings import TrainingSettings
from shared.errors import SourceError
from shared.features import FEATURE_SET_VERSION, WindowSpec
from shared.manifest import ModelManifest
from shared.regimes import RegimeStats

SIM = "sim"
CMAPSS = "cmapss:"
BASE_SET_PARAM = "base_set"  # the training parameter `models.cmapss` records (kept equal by a test)
_DEFAULT_CMAPSS_HORIZON = 30


@dataclass(frozen=True)
class CmapssSpec(SimSpec):
    """A C-MAPSS base set. The inherited fields keep their meaning for the record: `n_machines` engines,
    `steps` cycles in all, `horizon` in cycles, `seed` of the validation split."""

    path: str = ""

    def describe(self) -> str:
        return (f"{CMAPSS}{self.path} engines={self.n_machines} cycles={self.steps} horizon={self.horizon} "
                f"seed={self.seed} (NASA C-MAPSS, public run-to-failure data)")


def base_set_name(parent: ModelManifest, settings: TrainingSettings) -> str:
    """The base set a retrain from `parent` uses (see the module docstring for the order)."""
    if settings.base_set:
        return settings.base_set
    recorded = parent.training.params.get(BASE_SET_PARAM)
    if isinstance(recorded, str) and recorded:
        return recorded
    for source in parent.training.sources:
        if source.startswith(CMAPSS):
            return source.split()[0]
    return SIM


def resolve_cmapss(name: str) -> Path:
    """The file a ``cmapss:<file>`` base set names; RetrainError when it is not there."""
    from infra.datasets import default_datasets_dir

    given = Path(name.removeprefix(CMAPSS)).expanduser()
    path = given if given.is_absolute() or given.parent != Path() else default_datasets_dir() / "cmapss" / given
    if not path.is_file():
        raise RetrainError(f"base set {name!r}: {path} does not exist (stage the C-MAPSS files there, or set "
                           "FLEETLOOP_DATASETS / training.base_set)")
    return path


def base_set(parent: ModelManifest, settings: TrainingSettings, window: WindowSpec,
             regimes: RegimeStats | None = None) -> tuple[SimSpec, SourceRows]:
    """The base set's description and rows for a retrain from `parent` with `settings`; feature set 2's rows are
    normalised by `regimes` (default: the parent's; `hub.training.regimes` learns others from the field)."""
    name = base_set_name(parent, settings)
    if name == SIM:
        if window.feature_set_version != FEATURE_SET_VERSION:
            raise RetrainError(f"the simulated base set makes feature set {FEATURE_SET_VERSION} only; the parent "
                               f"uses {window.feature_set_version}: set training.base_set to a C-MAPSS file")
        spec = sim_spec(parent, settings)
        return spec, base_rows(spec, window, weight=settings.sim_weight,
                               validation_fraction=settings.validation_fraction, seed=settings.seed)
    if name.startswith(CMAPSS) and len(name) > len(CMAPSS):
        return cmapss_rows(name, parent, settings, window, parent.regimes if regimes is None else regimes)
    raise RetrainError(f"unknown base set {name!r}: use {SIM!r} or '{CMAPSS}<file>'")


def cmapss_rows(name: str, parent: ModelManifest, settings: TrainingSettings, window: WindowSpec,
                regimes: RegimeStats | None) -> tuple[CmapssSpec, SourceRows]:
    """Every window of every engine of the file, labelled from its end of life, for fitting only; feature set 2's
    normalised by `regimes` (the parent's, or those a retrain learned from the field).

    None of them chooses the threshold: that is tuned on the field's validation labels, where the fleet is.
    A C-MAPSS base set is one file's operating conditions; after a shift to others its F1 optimum sits
    elsewhere (on FD001 base rows + FD002 feedback, threshold tuning on both cost 0.02-0.04 F1 on FD002
    evaluation engines against tuning on the feedback alone).
    """
    from models.cmapss import engine_windows  # scikit-learn side, like the simulator's base set

    path = resolve_cmapss(name)
    horizon = settings.sim_horizon
    if horizon is None:
        recorded = parent.training.params.get("horizon")
        horizon = int(recorded) if isinstance(recorded, int | float) and not isinstance(recorded, bool) \
            else _DEFAULT_CMAPSS_HORIZON
    engines = _load(name, path)
    units = sorted(engines)
    spec = CmapssSpec(n_machines=len(units), steps=sum(len(v) for v in engines.values()), horizon=horizon,
                      seed=settings.seed, path=name.removeprefix(CMAPSS))
    if settings.sim_weight <= 0:
        return spec, SourceRows.empty("sim", window.n_features)
    try:
        data = engine_windows(engines, units, window, horizon, regimes)
    except ValueError as exc:  # the parent's window names sensors a C-MAPSS replay does not have
        raise RetrainError(f"base set {name!r} cannot make the parent's windows: {exc}") from None
    n = len(data)
    rows = SourceRows(
        source="sim", X=data.X, y=data.y, weight=np.full(n, settings.sim_weight),
        cohort=np.full(n, f"base/{path.stem}"), group=np.array([f"{path.stem}:{u}" for u in data.unit], dtype=str),
        trace_id=np.full(n, ""), validation=np.zeros(n, bool), unbiased=np.ones(n, bool),
    )
    return spec, rows


def base_readings(parent: ModelManifest, settings: TrainingSettings, window: WindowSpec) -> list[np.ndarray]:
    """The base set's raw readings, one ``(cycles, sensors)`` array per engine in `window`'s sensor order: what
    regime statistics learned from the field are fitted on beside the field's own readings, so the base set's
    regimes stay represented. A C-MAPSS base set only (the simulator makes feature set 1, which has no regimes)."""
    from infra.datasets import CMAPSS_SENSORS

    name = base_set_name(parent, settings)
    if not name.startswith(CMAPSS) or len(name) == len(CMAPSS):
        raise RetrainError(f"regimes learned from the field need a C-MAPSS base set; this retrain's is {name!r}: "
                           "set training.base_set to a C-MAPSS file")
    missing = [s for s in window.sensors if s not in CMAPSS_SENSORS]
    if missing:
        raise RetrainError(f"base set {name!r} has no sensor(s) {missing} of the parent's window")
    columns = [CMAPSS_SENSORS.index(s) for s in window.sensors]
    engines = _load(name, resolve_cmapss(name))
    return [engines[u][:, columns] for u in sorted(engines)]


def _load(name: str, path: Path) -> dict[int, np.ndarray]:
    from models.cmapss import load_engines

    try:
        return load_engines(path)
    except SourceError as exc:
        raise RetrainError(f"base set {name!r}: {exc}") from None
