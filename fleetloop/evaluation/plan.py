"""The fleet of a C-MAPSS evaluation: engines, their roles, the gateways that replay them, and what gets labelled.

- The `--fleet` file's engines (all, or a seeded subset) are split by the seed into *feedback* engines, whose
  failures technicians confirm and label, and *evaluation* engines, which nobody labels and every model is
  scored on afterwards.
- Gateways get a balanced share of both (longest engine first to the least-loaded gateway) and replay their
  feedback engines first, then their evaluation engines, each group in a seeded order, one engine after the
  other. Labels can only exist once an engine has failed, so this puts them in the first half of the replay
  and leaves the second half for the loop to retrain, gate and roll out while gateways are still serving
  (a rollout advances only on evidence from devices that are running).
- Every gateway's readings are stamped with one data clock (`ReplayClock`): its i-th reading at a fixed epoch
  plus ``i / rate``. The hub splits labelled traffic by data time, so the frozen evaluation slice depends on
  the plan and the seed only, never on when the processes happened to run.
- Technicians label a share of each feedback engine's windows (`label_share`), chosen so that labels stay
  within a budget of all the predictions the fleet makes: those the hub's label-selection policy picks, or an
  evenly spaced share (`labelled`).

Pure, but for `write_replay`, which writes a gateway's replay file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.cmapss import split_engines
from shared.errors import ConfigError, SourceError
from shared.features import WindowSpec


@dataclass(frozen=True)
class Engine:
    """One engine of the fleet file: its id, how many cycles it runs until it fails, and its role."""

    unit: int
    cycles: int
    feedback: bool


@dataclass(frozen=True)
class Gateway:
    """A gateway and the engines it replays, in replay order."""

    device_id: str
    engines: tuple[Engine, ...]

    @property
    def cycles(self) -> int:
        return sum(e.cycles for e in self.engines)

    def offsets(self) -> dict[int, int]:
        """Readings replayed before each engine's first cycle: engine cycle ``c`` is reading ``offset + c``."""
        out, done = {}, 0
        for e in self.engines:
            out[e.unit] = done
            done += e.cycles
        return out


@dataclass(frozen=True)
class FleetPlan:
    gateways: tuple[Gateway, ...]

    @property
    def engines(self) -> tuple[Engine, ...]:
        return tuple(e for g in self.gateways for e in g.engines)

    @property
    def feedback_units(self) -> list[int]:
        return sorted(e.unit for e in self.engines if e.feedback)

    @property
    def evaluation_units(self) -> list[int]:
        return sorted(e.unit for e in self.engines if not e.feedback)

    def gateway(self, device_id: str) -> Gateway:
        return next(g for g in self.gateways if g.device_id == device_id)


REPLAY_EPOCH = 1_700_000_000.0
"""The data time of every gateway's first reading (a fixed instant: runs of one seed stamp the same times)."""


@dataclass(frozen=True)
class ReplayClock:
    """A gateway's data clock: the reading at position ``p`` (1-based, readings replayed) is stamped
    ``epoch + (p - 1) / rate`` (`agent.sources.replay.CmapssSource`'s ``start_ts``).

    >>> clock = ReplayClock(rate=4.0)
    >>> clock.position(clock.stamp(10)), clock.stamp(1) == REPLAY_EPOCH
    (10, True)
    """

    rate: float
    epoch: float = REPLAY_EPOCH

    def stamp(self, position: int) -> float:
        return self.epoch + (position - 1) / self.rate

    def position(self, ts: float) -> int:
        return round((ts - self.epoch) * self.rate) + 1


def windows_of(cycles: int, window: WindowSpec) -> int:
    """How many windows an agent emits for an engine of `cycles` cycles.

    >>> windows_of(10, WindowSpec(sensors=["a"], size=5, step=2))
    3
    """
    return 0 if cycles < window.size else (cycles - window.size) // window.step + 1


def last_window_end(gateway: Gateway, position: int, window: WindowSpec) -> int:
    """The replay position of the last window a gateway emits by reading `position` (0 before its first): where
    its prediction log stands once it has replayed that far.

    >>> g = Gateway("gw", (Engine(1, 10, True), Engine(2, 10, False)))
    >>> spec = WindowSpec(sensors=["a"], size=5, step=2)
    >>> [last_window_end(g, p, spec) for p in (4, 6, 13, 14, 20)]
    [0, 5, 9, 9, 19]
    """
    best = 0
    for engine, offset in zip(gateway.engines, gateway.offsets().values(), strict=True):
        if offset + window.size > position or engine.cycles < window.size:
            continue
        last = min(engine.cycles, position - offset)
        best = offset + window.size + (last - window.size) // window.step * window.step
    return best


def plan_fleet(lengths: Mapping[int, int], *, devices: int, seed: int, feedback_fraction: float = 0.5,
               n_engines: int | None = None) -> FleetPlan:
    """Split the engines (`lengths`: id -> cycles) into feedback and evaluation and deal them to gateways.

    >>> plan = plan_fleet({1: 200, 2: 150, 3: 180, 4: 210}, devices=2, seed=1)
    >>> [[(e.unit, e.feedback) for e in g.engines] for g in plan.gateways]
    [[(1, True), (4, False)], [(2, True), (3, False)]]
    """
    units = sorted(lengths)
    if n_engines is not None:
        if not 2 <= n_engines <= len(units):
            raise ConfigError(f"--engines must be between 2 and {len(units)} (the fleet file's engines)")
        units = sorted(int(u) for u in np.random.default_rng(seed).choice(units, n_engines, replace=False))
    if not 0.0 < feedback_fraction < 1.0:
        raise ConfigError("the feedback fraction must lie strictly between 0 and 1")
    feedback, evaluation = split_engines(units, (feedback_fraction, 1.0 - feedback_fraction), seed)
    most = min(len(feedback), len(evaluation))
    if not 1 <= devices <= most:
        raise ConfigError(f"--devices must be between 1 and {most}: every gateway replays at least one feedback "
                          f"and one evaluation engine ({len(feedback)} and {len(evaluation)} of {len(units)})")
    rng = np.random.default_rng([seed, 1])
    shares: list[list[Engine]] = [[] for _ in range(devices)]
    for group, is_feedback in ((feedback, True), (evaluation, False)):
        dealt = _deal([Engine(u, int(lengths[u]), is_feedback) for u in group], devices)
        for share, mine in zip(shares, dealt, strict=True):
            share.extend(mine[i] for i in rng.permutation(len(mine)))
    width = len(str(devices - 1))
    return FleetPlan(tuple(Gateway(f"gw-{i:0{width}d}", tuple(s)) for i, s in enumerate(shares)))


def _deal(engines: Sequence[Engine], devices: int) -> list[list[Engine]]:
    """Longest engine first to the gateway with the fewest cycles so far (ties: the lower index)."""
    shares: list[list[Engine]] = [[] for _ in range(devices)]
    loads = [0] * devices
    for e in sorted(engines, key=lambda e: (-e.cycles, e.unit)):
        i = loads.index(min(loads))
        shares[i].append(e)
        loads[i] += e.cycles
    return shares


def label_share(plan: FleetPlan, window: WindowSpec, budget: float) -> float:
    """The share of each feedback engine's windows to label so that labels stay within `budget` of all the
    windows (predictions) the fleet makes; at most 1 (everything the feedback engines show).

    >>> plan = plan_fleet({1: 104, 2: 104, 3: 104, 4: 104}, devices=1, seed=1)
    >>> label_share(plan, WindowSpec(sensors=["a"], size=5, step=1), 0.25)
    0.49
    """
    if not 0.0 < budget <= 1.0:
        raise ConfigError("the label budget must lie in (0, 1]")
    total = sum(windows_of(e.cycles, window) for e in plan.engines)
    engines = [windows_of(e.cycles, window) for e in plan.engines if e.feedback]
    # `labelled` takes at most ceil(share * n) of an engine's n windows: one extra per engine at worst
    return 1.0 if not sum(engines) else max(0.0, min(1.0, (budget * total - len(engines)) / sum(engines)))


def labelled(n: int, share: float, offset: float) -> np.ndarray:
    """Indices of an evenly spaced `share` of `n` windows; `offset` in [0, 1) shifts where the spacing starts.

    >>> labelled(10, 0.5, 0.0).tolist(), labelled(10, 0.5, 0.5).tolist(), len(labelled(100, 0.25, 0.3))
    ([1, 3, 5, 7, 9], [0, 2, 4, 6, 8], 25)
    """
    k = np.arange(n)
    if share >= 1.0:
        return k
    return k[np.floor((k + 1) * share + offset) > np.floor(k * share + offset)]


def label_offset(seed: int, unit: int) -> float:
    """The seeded start of an engine's label spacing, in [0, 1)."""
    return float(np.random.default_rng([seed, unit, 2]).random())


def engine_lengths(path: Path) -> dict[int, int]:
    """Cycles of every engine in a C-MAPSS text file (the unit id is each line's first field)."""
    lengths: dict[int, int] = {}
    for unit in _units(path):
        lengths[unit] = lengths.get(unit, 0) + 1
    if not lengths:
        raise SourceError(f"{path} holds no C-MAPSS rows")
    return lengths


def engine_regimes(path: Path) -> dict[int, list[str]]:
    """The operating regime of every cycle of every engine in a C-MAPSS text file: its first operating setting
    (altitude, in thousands of feet) rounded, which tells FD002's six regimes apart (FD001 flies one).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = f.write_text("1 1 42.0049 0.84 100.0 1\\n1 2 10.0018 0.25 100.0 1\\n2 1 0.0023 0.0 100.0 1\\n")
    >>> engine_regimes(f)
    {1: ['42', '10'], 2: ['0']}
    """
    regimes: dict[int, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 3:
                regimes.setdefault(_int(fields[0]), []).append(str(round(float(fields[2]))))
    return regimes


def write_replay(source: Path, gateway: Gateway, out: Path) -> Path:
    """Write the rows of `gateway`'s engines, in its replay order, as a C-MAPSS text file `out`."""
    wanted = {e.unit for e in gateway.engines}
    rows: dict[int, list[str]] = {u: [] for u in wanted}
    with source.open(encoding="utf-8") as fh:
        for line in fh:
            fields = line.split(maxsplit=1)
            if fields and _int(fields[0]) in wanted:
                rows[_int(fields[0])].append(line if line.endswith("\n") else line + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line for e in gateway.engines for line in rows[e.unit]), encoding="utf-8")
    return out


def _units(path: Path) -> Iterable[int]:
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                fields = line.split(maxsplit=1)
                if fields:
                    unit = _int(fields[0])
                    if unit < 0:
                        raise SourceError(f"{path}:{number}: the first field is not an engine id")
                    yield unit
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _int(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        return -1
    return int(value) if math.isfinite(value) and value == int(value) else -1
