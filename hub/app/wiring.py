"""The hub's object graph, built once from `HubSettings`: store, metrics, signing key, registry, command
publisher, trace requester, drift, training, rollout and incident services, in one frozen `Services`.

`build_services` is the only place that loads the signing key or builds a command publisher: `HubService`,
the CLI commands, the API (`hub.api.app.create_app` takes a `Services`), the story, the evaluation and
provisioning all build through it. Options leave parts out for callers that need less:

- ``registry=False``: no key, registry, training or rollouts (store-only commands: drift, devices, …);
- ``mqtt=False``: no command publisher or trace requester; rollouts read, and act without publishing;
- ``training=False``: no training service (it brings scikit-learn).

Nothing here starts a thread or connects to the broker: `HubService.start` does, and the CLI for a
publisher of its own. The caller owns the store (`Services.close` closes it).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hub.app.health import HealthProbes
from hub.app.metrics import HubMetrics
from hub.app.settings import HubSettings
from hub.store.ports import HubStore

if TYPE_CHECKING:  # the API imports this module: keep paho and scikit-learn out of its imports
    from hub.drift.service import DriftService
    from hub.incidents.service import IncidentService
    from hub.labels.service import LabelSettings
    from hub.mqtt.publisher import CommandPublisher, TraceRequester
    from hub.mqtt.windows import WindowRequester
    from hub.registry.service import Registry
    from hub.registry.signing import SigningKey
    from hub.rollout.service import AssignmentPublisher, RolloutService
    from hub.training.service import TrainingService
    from shared.messages import Assign, Command

Clock = Callable[[], float]
COMMANDS_CLIENT_ID = "fleetloop-hub-commands"


def commands_client_id(settings: HubSettings) -> str:
    """The command publisher's MQTT client id for one hub process (``hub serve`` or a ``hub ingest`` worker).

    Every process has one; with a shared id the broker closes the older connection each time another connects,
    so the processes take turns being connected and assignments wait ("not sent yet"). A worker's
    `ingest_client_id` is unique, so its publisher's id is derived from it; without one, from the host name and
    process id (replicas of a scaled compose service have no id of their own, but each its host name).
    """
    if settings.ingest_client_id:
        return f"{settings.ingest_client_id}-commands"[:128]
    return f"{COMMANDS_CLIENT_ID}-{socket.gethostname()}-{os.getpid()}"[:128]


@dataclass(frozen=True)
class Services:
    """What the hub's entry points share: one of each, or None where the caller left it out.

    Tests may build one directly from the parts they need (`Services(settings, store, registry=…)`); the
    API answers 503 on the routes of a part that is None.
    """

    settings: HubSettings
    store: HubStore
    metrics: HubMetrics = field(default_factory=HubMetrics)
    clock: Clock = time.time
    key: SigningKey | None = None
    registry: Registry | None = None
    drift: DriftService | None = None
    commands: CommandPublisher | None = None
    traces: TraceRequester | None = None
    windows: WindowRequester | None = None  # asks devices for raw sensor windows (None: no broker)
    rollouts: RolloutService | None = None
    training: TrainingService | None = None
    incidents: IncidentService | None = None
    health: HealthProbes = field(default_factory=HealthProbes)  # MQTT clients and jobs register when they run

    @property
    def labels(self) -> LabelSettings:
        """How annotations become labels (`HubSettings.labels`)."""
        return self.settings.labels

    def artifact_url(self, version: str) -> str:
        """Where devices fetch `version`'s signed artifact (the API's ``/models/{version}/artifact``)."""
        return artifact_url(self.settings, version)

    def close(self) -> None:
        """Close the store (the publisher, when started, is stopped by whoever started it)."""
        self.store.close()


class OfflinePublisher:
    """The rollout service's publisher when the caller has no broker: nothing is sent (read-only commands)."""

    def assign(self, device_id: str, assign: Assign) -> bool:
        return False

    def send(self, device_id: str, command: Command) -> bool:
        return False

    def is_connected(self) -> bool:
        return False


def artifact_url(settings: HubSettings, version: str) -> str:
    """The URL of `version`'s artifact under `settings.artifact_base` (set, or derived from the API's address)."""
    return f"{settings.artifact_base}/models/{version}/artifact"


def load_key(settings: HubSettings) -> SigningKey:
    """The hub's model-signing key (`signing_key_file`, default under `data_dir`; created only in dev mode)."""
    from hub.registry.signing import SigningKey, default_key_path

    return SigningKey.load(settings.signing_key_file or default_key_path(settings.data_dir),
                           dev_mode=settings.dev_mode)


def build_services(
    settings: HubSettings,
    *,
    store: HubStore | None = None,
    metrics: HubMetrics | None = None,
    clock: Clock = time.time,
    key: SigningKey | None = None,
    registry: bool = True,
    mqtt: bool = True,
    training: bool = True,
    client_id: str = COMMANDS_CLIENT_ID,
    check_artifacts: bool = False,
) -> Services:
    """Every service of the hub over one store (opened from `settings.store` unless given), built once.

    `key` replaces the key file (tests sign with a generated key); `client_id` names the command publisher's
    MQTT client (a CLI process beside a running hub needs its own). `check_artifacts` (the serving hub): a rollout
    starts only if the hub itself can fetch the candidate's artifact URL (`hub.app.artifacts`).
    """
    from hub.drift.service import DriftService
    from hub.incidents.service import IncidentService
    from hub.registry.references import ReferenceLibrary
    from hub.store import open_store

    if registry:  # the registry's versions, staging and (dev mode) the key live there
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    owned = store is None
    store = open_store(settings.store) if store is None else store
    models_dir = settings.data_dir / "models"
    commands = traces = windows = None
    if mqtt:
        from hub.mqtt.publisher import CommandPublisher, TraceRequester
        from hub.mqtt.windows import WindowRequester

        commands = CommandPublisher(settings, client_id=client_id)
        traces = TraceRequester(store, settings.labels, commands.send)
        windows = WindowRequester(store, commands.send, retention_s=settings.raw_window_retention_days * 86400.0,
                                  learn_per_pass=settings.raw_window_learn_per_pass,
                                  learn_per_day=settings.raw_window_learn_per_day,
                                  learn_lookback_s=settings.raw_window_learn_lookback_s, clock=clock)
    reg = rollouts = trainer = None
    if registry:
        from hub.app.artifacts import check_artifact
        from hub.registry.service import Registry
        from hub.rollout.service import RolloutService

        try:
            key = key if key is not None else load_key(settings)
        except BaseException:
            if owned:
                store.close()
            raise
        reg = Registry(store, models_dir, key, clock=clock)
        publisher: AssignmentPublisher = commands if commands is not None else OfflinePublisher()
        rollouts = RolloutService(
            store, reg, publisher,
            artifact_url=lambda version: artifact_url(settings, version), clock=clock,
            check_artifact=(lambda version: check_artifact(version, artifact_url(settings, version)))
            if check_artifacts else None,
            limits=settings.rollout_limits.to_limits(),
            policies={name: p.to_policy() for name, p in settings.rollout_policies.items()},
            # a drift verdict on the incumbent counts while its window could still overlap the rollout's start
            drift_max_age_s=settings.drift.window_s + settings.drift.interval_s,
        )
        if training:
            from hub.training.service import TrainingService

            trainer = TrainingService(store, reg, settings.training, labels=settings.labels,
                                      staging_dir=settings.data_dir / "staging", clock=clock)
    return Services(
        settings=settings, store=store, metrics=metrics if metrics is not None else HubMetrics(), clock=clock,
        key=key if registry else None, registry=reg, commands=commands, traces=traces, windows=windows,
        rollouts=rollouts,
        training=trainer, drift=DriftService(store, ReferenceLibrary(models_dir), settings.drift),
        incidents=IncidentService(store, settings.incidents, settings.topics),
    )
