from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import TopicError
from shared.topics import DEVICE_TO_HUB, Kind, Topics


@given(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"), st.sampled_from(list(Kind)))
def test_build_parse_round_trip(device_id, kind):
    topics = Topics("plant/a")
    parsed = topics.parse(topics.topic(device_id, kind))
    assert (parsed.device_id, parsed.kind) == (device_id, kind)


@pytest.mark.parametrize("bad", ["fleetloop/dev/bogus", "other/dev/anomaly", "fleetloop/anomaly", "fleetloop/+/stats",
                                 "fleetloop/dev-1/model", "fleetloop//stats"])
def test_parse_refuses_foreign_topics(bad):
    with pytest.raises(TopicError):
        Topics().parse(bad)


@pytest.mark.parametrize("device", ["a/b", "+", "#", "", "-x", "x" * 65])
def test_device_ids_that_break_topics_are_refused(device):
    with pytest.raises(TopicError):
        Topics().topic(device, Kind.STATUS)


def test_subscriptions():
    topics = Topics("fleetloop")
    assert topics.device_subscriptions("d1") == ["fleetloop/d1/model/assign", "fleetloop/d1/cmd"]
    subs = topics.hub_subscriptions("hub")
    assert len(subs) == len(DEVICE_TO_HUB)
    assert "$share/hub/fleetloop/+/model/event" in subs
    assert topics.hub_subscriptions(None)[0] == "fleetloop/+/status"
