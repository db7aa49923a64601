"""Sample weights that let field evidence count: the base set against the field labels.

A retrain fits on the base set (simulated or reference data, thousands of rows) and the field's labels (often
far fewer). At fixed per-row weights the base set dominates the fit (20,231 base rows against 2,842 field rows),
so where the two disagree (a new failure mode, a fault that looks different in this fleet) the field's pattern
is drowned. Two corrections, both settings of `hub.training.settings.TrainingSettings`:

- **field share** (``field_min_share``, off by default: see `TrainingSettings` for the measurement): when the
  base rows' total weight would exceed ``(1 - share) / share`` × the field's, every base row is scaled down by one
  factor until the field holds `share` of the total. The base set stays a prior: it still fills the regions the
  field has not labelled, but where both have rows and disagree the field's side carries at least as much weight.
  Never scaled up.
- **recency** (``field_half_life_s``, default off): a field label's weight halves every `half_life_s` of data
  time (its window's end) before the newest label, so when the fleet changes the recent labels win over old ones.

What was chosen, and the resulting totals, are recorded in the manifest (`shared.manifest.SampleWeighting`). Pure.
"""

from __future__ import annotations

import numpy as np

from shared.manifest import SampleWeighting


def recency_decay(ts: np.ndarray, half_life_s: float | None) -> np.ndarray:
    """Each row's factor: 0.5 per `half_life_s` of data time before the newest row (all ones when None).

    >>> recency_decay(np.array([0.0, 10.0, 20.0]), 10.0).tolist()
    [0.25, 0.5, 1.0]
    """
    t = np.asarray(ts, dtype=np.float64)
    if half_life_s is None or t.size == 0:
        return np.ones(t.shape, dtype=np.float64)
    return np.power(0.5, (t.max() - t) / half_life_s)


def base_scale(base_total: float, field_total: float, min_share: float) -> float:
    """The factor (<= 1) on every base row that gives the field at least `min_share` of the total weight.

    1 when the field already has it, when there are no field rows (nothing to outweigh the base set with) or
    when `min_share` is 0 (off).

    >>> base_scale(6000.0, 2000.0, 0.5), base_scale(1000.0, 2000.0, 0.5), base_scale(6000.0, 0.0, 0.5)
    (0.3333333333333333, 1.0, 1.0)
    """
    if min_share <= 0 or base_total <= 0 or field_total <= 0:
        return 1.0
    allowed = field_total * (1.0 - min_share) / min_share
    return min(1.0, allowed / base_total)


def weighting_record(*, base_weight: np.ndarray, field_weight: np.ndarray, base_row_weight: float,
                     field_row_weight: float, min_share: float, half_life_s: float | None,
                     scale: float) -> SampleWeighting:
    """What the manifest records of the weights as fitted (`base_weight` already scaled by `scale`)."""
    base_total, field_total = float(np.sum(base_weight)), float(np.sum(field_weight))
    total = base_total + field_total
    return SampleWeighting(
        method="field_share" if min_share > 0 else "fixed", base_row_weight=base_row_weight,
        field_row_weight=field_row_weight, field_min_share=min_share, half_life_s=half_life_s, base_scale=scale,
        base_total=round(base_total, 6), field_total=round(field_total, 6),
        field_share=round(field_total / total, 6) if total > 0 else None,
    )
