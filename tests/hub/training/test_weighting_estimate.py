"""The pure parts of field weighting (`hub.training.weighting`) and label-free estimates (`hub.training.estimate`)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from hub.training import estimate, weighting
from models import calibration


def test_doctests() -> None:
    for module in (weighting, estimate, calibration):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_the_base_set_is_never_scaled_up_and_the_share_is_met() -> None:
    assert weighting.base_scale(100.0, 900.0, 0.5) == 1.0  # the field already outweighs it
    scale = weighting.base_scale(9000.0, 1000.0, 0.75)
    assert 9000.0 * scale == pytest.approx(1000.0 / 3)  # the field holds 3/4
    record = weighting.weighting_record(base_weight=np.full(10, 0.5), field_weight=np.full(5, 2.0), base_row_weight=1,
                                        field_row_weight=2, min_share=0.5, half_life_s=None, scale=0.5)
    assert (record.base_total, record.field_total, record.field_share) == (5.0, 10.0, pytest.approx(2 / 3))


def test_perfectly_calibrated_scores_give_the_expected_confusion() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=200_000)
    y = rng.uniform(size=p.size) < p  # each window fails with chance p: the calibration is the identity
    alarm = p >= 0.6
    est = estimate.expected_figures(p, alarm)
    real = estimate.rates(float(np.sum(y & alarm)), float(np.sum(~y & alarm)), float(np.sum(y & ~alarm)),
                          float(np.sum(~y & ~alarm)))
    for key in estimate.FIGURES:
        assert est[key] == pytest.approx(real[key], abs=0.01), key
