"""A local Mosquitto for development and tests, rendered from the project's own config (``mosquitto/``).

`DevBroker` (`broker`) renders the config (`config`) into a private work directory, creates a ``hub`` user and
device users with random passwords (`passwords`), runs ``mosquitto -c`` as a child process and waits for a
CONNACK (`probe`). ``fleetloop broker run`` is the CLI around it (`cli`). Stdlib only, so the agent extra is
enough. The credential helpers (`new_password`, `passwd_line`, `render_acl`, `write_private`) and the TLS
renderer (`render_tls_config`) are shared with
`fleetloop.provision`, which writes the same files for docker compose.
"""

from fleetloop.devbroker.broker import CREDENTIALS_FILE, DevBroker
from fleetloop.devbroker.cli import build_parser, run
from fleetloop.devbroker.config import (
    HOST,
    HUB_USER,
    find_config_dir,
    find_mosquitto,
    render_acl,
    render_config,
    render_tls_config,
)
from fleetloop.devbroker.passwords import hash_password, new_password, passwd_line, password_matches, write_private
from fleetloop.devbroker.probe import free_port, mqtt_connack, port_is_free

__all__ = [
    "CREDENTIALS_FILE", "HOST", "HUB_USER", "DevBroker", "build_parser", "find_config_dir", "find_mosquitto",
    "free_port", "hash_password", "mqtt_connack", "new_password", "passwd_line", "password_matches",
    "port_is_free", "render_acl", "render_config", "render_tls_config", "run", "write_private",
]
