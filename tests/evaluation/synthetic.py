"""Small synthetic C-MAPSS files: engines that wear out and fail at their last cycle, in NASA's text format.

Sensor j reads ``base_j + wear_j * (cycle / life)**3 + noise``, so the last cycles of an engine are what a model
can learn to flag; `shift` moves every sensor, as another operating regime would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_COLUMNS = 26


def synthetic_rows(n_engines: int, seed: int, *, min_life: int = 60, max_life: int = 90,
                   shift: float = 0.0, first_unit: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(10.0, 50.0, 21)
    wear = np.linspace(2.0, -3.0, 21)
    rows = []
    for unit in range(first_unit, first_unit + n_engines):
        life = int(rng.integers(min_life, max_life + 1))
        cycles = np.arange(1, life + 1)
        ops = np.column_stack([rng.normal(0, 0.002, life), rng.normal(0, 0.0002, life), np.full(life, 100.0)])
        sensors = base + shift + np.outer((cycles / life) ** 3, wear) + rng.normal(0, 0.15, (life, 21))
        rows.append(np.column_stack([np.full(life, unit), cycles, ops, sensors]))
    return np.concatenate(rows)


def write_cmapss(path: Path, rows: np.ndarray) -> Path:
    """NASA's layout: unit and cycle as integers, then 24 numbers, space separated, two trailing spaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [" ".join([str(int(r[0])), str(int(r[1])), *(f"{v:.4f}" for v in r[2:])]) + "  " for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
