"""How long the hub keeps what grows without bound, and what pruning removed. Pure: settings and cutoffs.

Dead letters are kept by age, count and bytes (a flood of garbage must not grow hub.db without end);
hub events, drift reports, stats and sample predictions by age. What training and labels still need is never
pruned (`hub.store.sqlite.retention`): a sample an annotation names (by trace or by a device's time range),
one in a label set or in the frozen evaluation slice, and the newest drift report of each scope. Incidents go
once they are over (resolved, closed or dropped) for `incidents_max_age_s`, with their windows, history and
delivery log (not while a notification of them is still pending): a technician's verdict stays as the
annotations it became. Anomalies,
annotations, label sets, model versions and rollouts are the fleet's record and are not pruned.
SQLite reuses the freed pages; the file only shrinks with ``VACUUM``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

DAY_S = 86400.0


class RetentionSettings(BaseModel):
    """What the hub's pruning job keeps (``HubSettings.retention``; ``FLEETLOOP_HUB_RETENTION__…``)."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(default=3600.0, gt=0, description="how often the pruning job runs")
    dead_letters_max_age_s: float = Field(default=14 * DAY_S, gt=0, allow_inf_nan=False)
    dead_letters_max_rows: int = Field(default=100_000, ge=1)
    dead_letters_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024,
                                        description="payload + detail bytes kept, newest first")
    events_max_age_s: float = Field(default=365 * DAY_S, gt=0, allow_inf_nan=False)
    drift_reports_max_age_s: float = Field(default=90 * DAY_S, gt=0, allow_inf_nan=False,
                                           description="the newest report of each scope is always kept")
    stats_max_age_s: float = Field(default=90 * DAY_S, gt=0, allow_inf_nan=False)
    samples_max_age_s: float = Field(
        default=180 * DAY_S, gt=0, allow_inf_nan=False,
        description="sample predictions no annotation, label set or evaluation slice names; keep it above the "
                    "label TTL (labels.ttl_s, 90 days) so a late annotation still finds its trace")
    incidents_max_age_s: float = Field(
        default=365 * DAY_S, gt=0, allow_inf_nan=False,
        description="resolved, closed and dropped incidents, counted from when they ended (their verdicts stay as "
                    "annotations)")
    batch_rows: int = Field(default=5000, ge=1, description="rows deleted per transaction (short write locks)")

    def cutoffs(self, now: float) -> Cutoffs:
        """The timestamps before which each kind of row may go, at hub time `now`."""
        return Cutoffs(
            dead_letters=now - self.dead_letters_max_age_s, events=now - self.events_max_age_s,
            drift_reports=now - self.drift_reports_max_age_s, stats=now - self.stats_max_age_s,
            samples=now - self.samples_max_age_s, incidents=now - self.incidents_max_age_s,
        )


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows older than these (hub or device ``ts`` as each table keeps it) may be pruned."""

    dead_letters: float
    events: float
    drift_reports: float
    stats: float
    samples: float
    incidents: float = float("-inf")


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows removed by one pruning run, by table."""

    dead_letters: int = 0
    events: int = 0
    drift_reports: int = 0
    stats: int = 0
    samples: int = 0
    incidents: int = 0

    @property
    def total(self) -> int:
        return self.dead_letters + self.events + self.drift_reports + self.stats + self.samples + self.incidents
