"""MQTT topics: the only place topic strings are built or parsed.

Device → hub: ``{p}/{device}/status|anomaly|sample|stats|annotation|model/event|window``.
Hub → device: ``{p}/{device}/model/assign`` (retained) and ``{p}/{device}/cmd``.
Hub → plant systems: ``{p}/_hub/incidents/{site}`` (not retained). ``_hub`` cannot be a device id (ids start
with a letter or digit), so no device can publish there, and the hub's device subscriptions never match it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from shared.errors import TopicError

DEFAULT_PREFIX = "fleetloop"
HUB_LEVEL = "_hub"  # the hub's own topics under the prefix: never a device id
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class Kind(StrEnum):
    """What a topic carries. Values are the topic suffix after ``{p}/{device}/``."""

    STATUS = "status"
    ANOMALY = "anomaly"
    SAMPLE = "sample"
    STATS = "stats"
    ANNOTATION = "annotation"
    MODEL_EVENT = "model/event"
    ASSIGN = "model/assign"
    CMD = "cmd"
    WINDOW = "window"  # a raw sensor window the hub asked for (`shared.messages.RawWindow`)


DEVICE_TO_HUB = (Kind.STATUS, Kind.ANOMALY, Kind.SAMPLE, Kind.STATS, Kind.ANNOTATION, Kind.MODEL_EVENT, Kind.WINDOW)
HUB_TO_DEVICE = (Kind.ASSIGN, Kind.CMD)
_BY_SUFFIX = {kind.value: kind for kind in Kind}


def validate_device_id(device_id: str) -> str:
    """Return `device_id` if it is usable as one topic level and a broker username, else raise."""
    if not _DEVICE_ID.match(device_id):
        raise TopicError(
            f"invalid device id {device_id!r}: use 1-64 letters, digits, '_', '-' or '.', starting with "
            "a letter or digit"
        )
    return device_id


@dataclass(frozen=True)
class ParsedTopic:
    device_id: str
    kind: Kind


class Topics:
    """Builds and parses every topic under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not _PREFIX.match(prefix):
            raise TopicError(f"invalid topic prefix {prefix!r}: use levels of letters, digits, '_-.'")
        self.prefix = prefix

    def topic(self, device_id: str, kind: Kind) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/{kind.value}"

    def parse(self, topic: str) -> ParsedTopic:
        """Split a concrete topic into device id and kind; raise TopicError for anything else."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic!r} is not under prefix {self.prefix!r}")
        device_id, sep, suffix = topic[len(head) :].partition("/")
        kind = _BY_SUFFIX.get(suffix)
        if not sep or kind is None:
            raise TopicError(f"topic {topic!r} is not a fleetloop topic")
        validate_device_id(device_id)
        return ParsedTopic(device_id, kind)

    def incidents(self, site: str | None) -> str:
        """Where incident events of a site go (``_none`` for devices without a site); TopicError for a site
        that cannot be one topic level."""
        if site is not None and not _DEVICE_ID.match(site):
            raise TopicError(f"site {site!r} cannot be a topic level: use letters, digits, '_', '-' or '.'")
        return f"{self.prefix}/{HUB_LEVEL}/incidents/{site or '_none'}"

    def device_subscriptions(self, device_id: str) -> list[str]:
        """What a device subscribes to: its own hub → device topics."""
        return [self.topic(device_id, kind) for kind in HUB_TO_DEVICE]

    def hub_subscriptions(self, share_group: str | None = "hub") -> list[str]:
        """What the hub subscribes to: every device → hub topic, as MQTT 5 shared subscriptions."""
        filters = [f"{self.prefix}/+/{kind.value}" for kind in DEVICE_TO_HUB]
        if share_group:
            return [f"$share/{share_group}/{f}" for f in filters]
        return filters

    def all_devices(self, kind: Kind) -> str:
        """A wildcard filter for one kind across the fleet (for observers and tests)."""
        return f"{self.prefix}/+/{kind.value}"
