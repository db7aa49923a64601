"""One way to build a paho MQTT client, and one way to close it: MQTT 5, callback API 2, credentials, TLS.

Every MQTT connection of fleetloop (agent link, MQTT sensor source, hub ingest, hub command publisher, fleet
monitor, simulator publisher) is built here, so protocol, TLS and reconnect behaviour are decided in one place.
"""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.codec import ACCEPTS_PROPERTY, accepts_value


def build_client(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    tls_ca: str | None = None,
    reconnect_max_s: int = 30,
    manual_ack: bool = False,
    logger: str | None = None,
) -> mqtt.Client:
    """A paho client speaking MQTT 5 with callback API version 2, reconnecting with backoff up to `reconnect_max_s`.

    `tls_ca` turns on TLS against that CA file (OSError/ValueError if it is unusable); `manual_ack` leaves
    acknowledging QoS 1 messages to the caller (`client.ack`) so they are acked only once stored.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=True,
        manual_ack=manual_ack,
    )
    if logger is not None:
        client.enable_logger(logging.getLogger(logger))
    if username is not None:
        client.username_pw_set(username, password)
    if tls_ca:
        client.tls_set(ca_certs=tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
    return client


def close_client(client: mqtt.Client, properties: Properties | None = None) -> None:
    """Disconnect a paho client started with `loop_start`, stop its network thread and release its sockets.

    paho closes the wake-up socket pair `loop_start` opened only in ``Client.__del__``, which a reference
    cycle may never run before the sockets are collected (a ResourceWarning): it is closed here.
    """
    client.disconnect(properties=properties)
    client.loop_stop()
    client._reset_sockets(sockpair_only=True)


def publish_properties(*, content_type: str | None = None, user: dict[str, str] | None = None) -> Properties:
    """MQTT 5 PUBLISH properties: the payload's content type (`shared.codec.CONTENT_TYPES`) and user properties
    (the hub's `shared.codec.ACCEPTS_PROPERTY`)."""
    props = Properties(PacketTypes.PUBLISH)
    if content_type is not None:
        props.ContentType = content_type
    if user:
        props.UserProperty = list(user.items())
    return props


def message_property(message: mqtt.MQTTMessage, name: str) -> str | None:
    """A received message's content type (``name="content_type"``) or the value of user property `name`; None if
    it has none (an MQTT 3 client, a sender that does not set it)."""
    props = getattr(message, "properties", None)
    if props is None:
        return None
    if name == "content_type":
        value = getattr(props, "ContentType", None)
        return value if isinstance(value, str) else None
    for key, value in getattr(props, "UserProperty", None) or ():
        if key == name:
            return str(value)
    return None


def hub_properties() -> Properties:
    """The properties of a hub → device message: the wire formats this hub decodes (`shared.codec`), so an agent in
    ``wire_format = "auto"`` may switch to MessagePack."""
    return publish_properties(user={ACCEPTS_PROPERTY: accepts_value()})
