"""Admitting an assignment (issue 10 #5): the hub's approval, expiry and the per-device counter (pure logic)."""

from __future__ import annotations

import pytest

from agent.models.admission import Accepted, admit, verify_approval
from hub.registry.signing import SigningKey
from shared.errors import ModelIntegrityError
from shared.messages import Assign
from shared.wire import replace

SHA = "a" * 64


def signed(key: SigningKey, counter: int, *, device: str = "dev-0", version: str = "v2", expires: float = 2000.0,
           rollback: bool = False) -> Assign:
    return key.sign_assignment(Assign(ts=1000.0, version=version, mode="active", sha256=SHA, signature="", url="u",
                                      device_id=device, expires=expires, counter=counter, rollback=rollback))


def test_the_approval_covers_every_signed_field():
    key = SigningKey.generate()
    assign = signed(key, 5)
    verify_approval(assign, key.verifier())
    for change in ({"version": "v9"}, {"sha256": "b" * 64}, {"counter": 6}, {"expires": 9e9}, {"device_id": "d"},
                   {"url": "http://evil/"}, {"rollback": True}, {"mode": "shadow"}):
        with pytest.raises(ModelIntegrityError, match="approval does not verify"):
            verify_approval(replace(assign, **change), key.verifier())
    with pytest.raises(ModelIntegrityError, match="approval does not verify"):
        verify_approval(assign, SigningKey.generate().verifier())
    with pytest.raises(ModelIntegrityError, match="no approval"):
        verify_approval(replace(assign, approval=None), key.verifier())


def test_counters_refuse_replays_and_a_rollback_is_a_newer_assignment():
    key = SigningKey.generate()
    last = Accepted(10, signed(key, 10).approval or "")
    ok = {"device_id": "dev-0", "now": 1500.0, "signed": True}
    assert admit(signed(key, 11), last=last, **ok)[0] == "new"
    assert admit(signed(key, 10), last=last, **ok)[0] == "repeat"  # the same one, redelivered (retained)
    verdict, reason = admit(signed(key, 9), last=last, **ok)
    assert verdict == "refuse" and "replayed" in reason
    assert admit(signed(key, 10, version="v3"), last=last, **ok) == (
        "refuse", "counter 10 was already used by another assignment")
    verdict, reason = admit(signed(key, 12, version="v1", rollback=True), last=last, **ok)
    assert verdict == "new" and "rollback" in reason
    assert admit(signed(key, 11, expires=1400.0), last=last, **ok)[0] == "refuse"  # expired: a freeze
    assert "not dev-0" in admit(signed(key, 11, device="dev-1"), last=last, **ok)[1]
    assert admit(signed(key, 1), last=None, **ok)[0] == "new"
    unsigned = Assign(ts=1.0, version="v2", mode="active", sha256=SHA, signature="", url="u")
    assert admit(unsigned, last=None, device_id="dev-0", now=1.0, signed=False)[0] == "new"  # dev mode
    assert admit(unsigned, last=None, device_id="dev-0", now=1.0, signed=True)[0] == "refuse"


def test_the_accepted_record_round_trips_and_tolerates_garbage():
    assert Accepted.from_json(Accepted(3, "sig").to_json()) == Accepted(3, "sig")
    assert Accepted.from_json("not json") is None and Accepted.from_json(None) is None
