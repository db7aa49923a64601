"""What the field's raw windows say about the active version's regime statistics (`fleetloop hub regimes`,
``GET /regimes``): read-only, nothing is fitted into a model or stored. The comparison is pure
(`hub.training.regimes.compare_regimes`)."""

from __future__ import annotations

from hub.store.ports import HubStore
from hub.training.regimes import RegimeComparison, compare_regimes
from hub.training.service.loading import field_regime_windows
from hub.training.settings import TrainingSettings
from shared.manifest import ModelManifest


def regimes_now(store: HubStore, manifest: ModelManifest, settings: TrainingSettings, *,
                since: float) -> RegimeComparison:
    """`manifest`'s regime statistics (feature set 2; ValueError without them) beside the readings of the raw windows
    received since `since` (at most ``settings.regimes_max_windows``, the newest), and the regimes k-means finds in
    those readings alone (as a ``--regimes field`` retrain would, without the base set)."""
    from models.regimes import fit_regimes  # scikit-learn: only when asked

    if manifest.regimes is None:
        raise ValueError(f"{manifest.version} uses feature set {manifest.window.feature_set_version}: it has no "
                         "regime statistics")
    sensors = manifest.window.sensors
    _, field = field_regime_windows(store, manifest, settings, since=since)  # what a retrain would read
    found = fit_regimes(field.series.values(), sensors, settings=manifest.regimes.settings, seed=settings.seed) \
        if field.readings else None
    return compare_regimes(manifest.version, manifest.regimes, field, sensors, found)
