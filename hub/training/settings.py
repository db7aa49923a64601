"""`TrainingSettings`: how the hub retrains and gates (proposed as ``HubSettings.training``).

Light on purpose (pydantic only): `hub.app.settings` imports it, and must not pull in scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.training.performance import PerformanceSettings
from hub.training.triggers import TriggerPolicy

if TYPE_CHECKING:
    from hub.gate.verdict import GateConfig

ParamValue = float | int | str | None
RegimeSource = Literal["parent", "field", "auto"]
"""Where a retrain's feature set 2 regime statistics come from (`hub.training.regimes`)."""


class GateSettings(BaseModel):
    """The gate's tolerances and its block bootstrap; the defaults, and why, are `hub.gate.verdict.GateConfig`'s
    (a test keeps them equal)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_recall_drop: float = Field(default=0.02, ge=0, allow_inf_nan=False)
    max_far_increase: float = Field(default=0.01, ge=0, allow_inf_nan=False)
    max_cohort_recall_drop: float = Field(default=0.05, ge=0, allow_inf_nan=False)
    max_cohort_far_increase: float = Field(default=0.02, ge=0, allow_inf_nan=False)
    far_per_recall_gain: float = Field(default=0.1, ge=0, allow_inf_nan=False, description="the false-alarm "
                                       "tolerance grows by this × the recall the candidate surely gains; 0: off")
    recall_per_far_reduction: float = Field(default=0.5, ge=0, allow_inf_nan=False, description="the recall "
                                            "tolerance grows by this × the false-alarm rate surely removed; 0: off")
    max_traded_recall_drop: float = Field(default=0.25, ge=0, le=1, allow_inf_nan=False,
                                          description="at most this much recall is bought with false alarms removed")
    recall_trade: Literal["never", "alarm_flood", "always"] = Field(
        default="alarm_flood", description="whether false alarms removed may buy recall: 'never'; 'alarm_flood' "
        "(only from an incumbent alarming on at least alarm_flood_far of healthy windows); 'always'")
    alarm_flood_far: float = Field(default=0.3, ge=0, le=1, allow_inf_nan=False, description="the incumbent "
                                   "false-alarm rate from which recall_trade 'alarm_flood' trades")
    min_positives: int = Field(default=50, ge=0)
    min_negatives: int = Field(default=200, ge=0)
    min_cohort_positives: int = Field(default=20, ge=0)
    min_cohort_negatives: int = Field(default=50, ge=0)
    min_positive_blocks: int = Field(default=10, ge=0, description="distinct blocks (device × split block) "
                                     "with a confirmed fault; fewer: insufficient_data")
    min_negative_blocks: int = Field(default=10, ge=0, description="distinct blocks with a healthy window")
    min_cohort_positive_blocks: int = Field(default=5, ge=0, description="below it a cohort's recall is not judged")
    min_cohort_negative_blocks: int = Field(default=5, ge=0, description="below it a cohort's FAR is not judged")
    alpha: float = Field(default=0.05, gt=0, le=0.5, allow_inf_nan=False,
                         description="a metric check fails only when its regression exceeds the tolerance "
                         "and the one-sided 1 - alpha lower bound of the regression is above 0")
    bootstrap_resamples: int = Field(default=1000, ge=100, le=100_000, description="paired block bootstrap draws")
    bootstrap_seed: int = Field(default=0, ge=0)
    max_parity_abs_diff: float = Field(default=1e-4, ge=0, allow_inf_nan=False)
    max_parity_flips: int = Field(default=0, ge=0)
    latency_budget_ms: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    far_floor_after_drift: bool = Field(default=True, description="when the incumbent drifted, measure false "
                                        "alarms from its rate before the drift if higher (hub.training.far_floor)")

    def config(self) -> GateConfig:
        from hub.gate.verdict import GateConfig  # scikit-learn comes with it: only when a gate runs

        return GateConfig(**self.model_dump())


class TrainingSettings(BaseModel):
    """Everything a retrain needs besides its inputs. Defaults, and why:

    - feedback counts twice a simulated row (``feedback_weight=2``, times each label's own weight from
      the label set): field labels are scarcer and closer to what the fleet sees than the simulator;
    - a 30% evaluation slice, assigned per ``split_block_s`` (1 h) block of a device's traffic rather than
      per trace: overlapping windows of the same minutes would otherwise sit on both sides of the split
      and flatter the candidate, which trained on their neighbours; a small or young fleet gets smaller
      blocks (``split_target_blocks``), and k-fold by device when even then the slice cannot be judged;
    - the simulated base set replays the parent's simulator settings (`sim_*` here override them);
    - fixed per-row weights by default; ``field_min_share`` (e.g. 0.5) scales the base set's rows down when they
      would outweigh the field's labels, for a fleet whose new pattern (a failure mode the features do not announce)
      the base set drowns (`hub.training.weighting`). Off by default because, measured, it did not help where a
      base set exists: on the simulated drift fixture (30 simulated machines, 12 drifted field machines) it cost
      F1 on the frozen slice (0.858 fixed, 0.838 at 0.5), the simulator being good evidence there; ``fleetloop eval
      cmapss --fast`` fits on field labels only (no base rows), so there it changes nothing. No recency decay by
      default (a fault seen months ago is still a fault); ``field_half_life_s`` sets one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=7, ge=0, description="seeds the fit and the validation split")
    family: str = Field(default="gbc", description="model family (models.training.FAMILIES)")
    params: dict[str, ParamValue] = Field(default_factory=dict, description="hyper-parameters over the defaults")
    feedback_weight: float = Field(default=2.0, gt=0, allow_inf_nan=False, description="× each label's weight")
    sim_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False, description="weight of a simulated row; 0: none")
    field_min_share: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False, description="the field labels' "
                                   "least share of the total training weight: base-set rows are scaled down to keep "
                                   "it (never up); 0: fixed weights (hub.training.weighting)")
    field_half_life_s: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="a field label's "
                                            "weight halves per this much data time before the newest; None: no decay")
    balance_cohorts: bool = Field(default=True, description="cap any cohort's share of the feedback weight "
                                  "at labels.max_cohort_share, so one site's labels do not dominate")
    eval_fraction: float = Field(default=0.3, gt=0, lt=1, description="share of labelled traffic held out")
    validation_fraction: float = Field(default=0.2, gt=0, lt=1, description="of training data, to pick the threshold")
    split_block_s: float = Field(default=3600.0, ge=0, allow_inf_nan=False,
                                 description="traces of one device within one block share a split; 0: per trace")
    split_target_blocks: int = Field(default=200, ge=1, description="fewer device × time blocks than this in the "
                                     "labelled traffic (a small or young fleet): the block shrinks to the observed "
                                     "span × devices / this, not below the window length (hub.training.split)")
    kfold_max_folds: int = Field(default=5, ge=0, le=50, description="when the frozen slice is too small to judge "
                                 "but all labels are not, judge by k-fold by device with at most this many folds; "
                                 "0 or 1: off")
    sim_n_machines: int | None = Field(default=None, ge=1)
    sim_steps: int | None = Field(default=None, ge=1)
    sim_horizon: int | None = Field(default=None, ge=0)
    sim_seed: int | None = Field(default=None, ge=0)
    base_set: str | None = Field(default=None, description="what retrains start from: 'sim' (the simulator) or "
                                 "'cmapss:<file>' (hub.training.base_sets); None: the parent model's base set")
    regimes: RegimeSource = Field(default="parent", description="feature set 2's regime statistics "
                                                "of a retrained model: 'parent' keeps the parent's; 'field' learns "
                                                "them from the devices' raw windows and the base set, and restates "
                                                "the field's rows under them (hub.training.regimes); 'auto' learns "
                                                "them when the field runs far from the parent's (regimes_far_share)")
    regimes_since_s: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="'field' regimes "
                                          "learn from raw windows received this far back; None: the label TTL")
    regimes_min_readings: int = Field(default=500, ge=1, description="'field' regimes need at least this many "
                                      "distinct field readings, else the retrain is refused")
    regimes_far_share: float = Field(default=0.1, ge=0.0, le=1.0, description="'auto' learns the field's regimes "
                                     "when more than this share of the field's raw readings lie far from every one "
                                     "of the parent's (hub.training.regimes.FAR_SPREADS) and there are "
                                     "regimes_min_readings of them; else it keeps the parent's")
    regimes_max_windows: int = Field(default=2000, ge=1, le=100_000, description="'field' regimes learn from at "
                                     "most this many raw windows (the newest)")
    reference_min_rows: int = Field(default=500, ge=1, description="random-sample field rows needed to take the "
                                    "drift reference from the field instead of the whole training set (the "
                                    "labelled ones, else the hub's random samples, labelled or not)")
    latency_runs: int = Field(default=300, ge=10, le=100_000, description="single-window inferences timed")
    check_interval_s: float = Field(default=300.0, gt=0, allow_inf_nan=False, description="trigger check period")
    triggers: TriggerPolicy = Field(default_factory=TriggerPolicy)
    gate: GateSettings = Field(default_factory=GateSettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings, description="realized "
                                             "performance monitoring on returning labels (hub.training.performance)")
