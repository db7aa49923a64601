"""Claiming a device slot: replicas of one compose service are identical, so each takes an identity at start.

A slot is claimed with an exclusive ``flock`` on its ``lock`` file, held for as long as the agent runs.
The kernel drops the lock when the process (or its container) dies, so a crashed agent never leaves a
stale claim behind. The claimer's name (a container's hostname) is written to ``holder``; claiming again
under the same name gets the old slot back when it is free, so a restarted container keeps its device id
and with it its database and outbox. Needs a filesystem whose flock every claimer shares: one host's
Docker volume is one (a network filesystem may not be).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from fleetloop.devbroker import write_private
from fleetloop.provision import Slot, read_slots
from shared.errors import ConfigError

LOCK_FILE = "lock"
HOLDER_FILE = "holder"
DEVICE_ID_PLACEHOLDER = "{device_id}"


class Claim:
    """A held slot; `release()` (or leaving the ``with`` block, or exiting) gives it back."""

    def __init__(self, slot: Slot, holder: str, fd: int) -> None:
        self.slot = slot
        self.holder = holder
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim({self.slot.device_id!r}, holder={self.holder!r}, {'held' if self.held else 'released'})"


def previous_holder(slot: Slot) -> str | None:
    """Who claimed `slot` last (None if nobody ever did)."""
    try:
        return (slot.path / HOLDER_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def claim_slot(devices_dir: Path, holder: str) -> Claim:
    """Claim the slot `holder` had before if it is free, else the first free one; ConfigError if none is."""
    if not holder or "\n" in holder:
        raise ConfigError(f"invalid slot holder name {holder!r}")
    slots = read_slots(devices_dir)
    if not slots:
        raise ConfigError(f"no device slots in {devices_dir}: run `fleetloop provision init` first")
    own = [s for s in slots if previous_holder(s) == holder]
    for slot in own + [s for s in slots if s not in own]:
        fd = os.open(slot.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        claim = Claim(slot, holder, fd)
        try:
            write_private(slot.path / HOLDER_FILE, holder + "\n")
        except BaseException:
            claim.release()
            raise
        return claim
    raise ConfigError(f"all {len(slots)} device slots in {devices_dir} are claimed: provision more slots "
                      "(fleetloop provision init --slots N; FLEETLOOP_DEVICE_SLOTS under docker compose) or run "
                      "fewer agents")


def agent_environment(slot: Slot, data_root: Path, *, source_topic: str | None = None) -> dict[str, str]:
    """The FLEETLOOP_AGENT_* variables that make `fleetloop agent run` this slot's device.

    `source_topic` is a template for the MQTT sensor source; ``{device_id}`` is replaced by the slot's id.
    """
    env = {
        "FLEETLOOP_AGENT_DEVICE_ID": slot.device_id,
        "FLEETLOOP_AGENT_MQTT_PASSWORD": slot.password,
        "FLEETLOOP_AGENT_DATA_DIR": str(data_root / slot.device_id),
        "FLEETLOOP_AGENT_SITE": slot.site,
        "FLEETLOOP_AGENT_ASSET_TYPE": slot.asset_type,
    }
    if source_topic is not None:
        if DEVICE_ID_PLACEHOLDER not in source_topic:
            raise ConfigError(f"--source-topic {source_topic!r} has no {DEVICE_ID_PLACEHOLDER}: every device "
                              "needs a topic of its own")
        env["FLEETLOOP_AGENT_SOURCE__TOPIC"] = source_topic.replace(DEVICE_ID_PLACEHOLDER, slot.device_id)
    return env
