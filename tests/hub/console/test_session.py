"""Console sessions without a server: signed, dated, tied to a token that still exists; the key's sources."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from hub.app.settings import HubSettings
from hub.console.session import SessionCodec, csrf_ok, session_key
from hub.console.settings import ConsoleSettings
from shared.errors import ConfigError
from tests.hub.api.conftest import TOKENS

KEY = b"k" * 32
TECH = "technician-token-0123456789abcdef"


def test_a_session_round_trips_and_a_removed_token_ends_it() -> None:
    codec = SessionCodec(KEY, TOKENS, 3600)
    session = codec.new("technician", "alice", TECH, now=1.0)
    assert codec.loads(codec.dumps(session)) == session
    assert TECH not in codec.dumps(session)
    without = SessionCodec(KEY, {t: r for t, r in TOKENS.items() if t != TECH}, 3600)
    assert without.loads(codec.dumps(session)) is None  # the token was removed: its sessions end
    demoted = SessionCodec(KEY, {**TOKENS, TECH: "viewer"}, 3600)
    assert demoted.loads(codec.dumps(session)) is None  # its role changed: sign in again
    assert SessionCodec(b"x" * 32, TOKENS, 3600).loads(codec.dumps(session)) is None  # another key


def test_a_session_past_its_max_age_is_none() -> None:
    value = SessionCodec(KEY, TOKENS, 60).dumps(SessionCodec(KEY, TOKENS, 60).new("viewer", "vic",
                                                                                  "viewer-token-0123456789abcdef", 0.0))
    assert SessionCodec(KEY, TOKENS, 60).loads(value) is not None
    assert SessionCodec(KEY, TOKENS, -1).loads(value) is None  # signed "now", so older than a max age below zero


def test_csrf_must_be_the_sessions_own() -> None:
    codec = SessionCodec(KEY, TOKENS, 60)
    one, two = (codec.new("operator", "ana", "operator-token-0123456789abcdef", now=0.0) for _ in range(2))
    assert csrf_ok(one, one.csrf) and not csrf_ok(one, two.csrf) and not csrf_ok(one, None) and not csrf_ok(one, "")


def test_the_key_comes_from_the_secret_else_the_tokens_else_random_in_dev_mode() -> None:
    base = {"mqtt_password": SecretStr("secret"), "tokens": TOKENS}
    derived = session_key(HubSettings(**base))
    assert derived == session_key(HubSettings(**base))  # every worker of one hub agrees
    assert derived != session_key(HubSettings(**{**base, "tokens": {**TOKENS, "x" * 32: "viewer"}}))
    secret = "s" * 40
    assert session_key(HubSettings(**base, console=ConsoleSettings(secret=SecretStr(secret)))) == secret.encode()
    dev = HubSettings(dev_mode=True)
    assert session_key(dev) != session_key(dev)  # per process (here: per call), never a fixed default


def test_a_short_console_secret_is_refused_outside_dev_mode() -> None:
    with pytest.raises(ConfigError, match=r"console\.secret is shorter than 32"):
        HubSettings.load(mqtt_password="secret", tokens=TOKENS, console={"secret": "short"})
    assert HubSettings.load(dev_mode=True, console={"secret": "short"}).console.secret is not None
