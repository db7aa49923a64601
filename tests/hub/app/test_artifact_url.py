"""The artifact URL devices are given: set, or derived from where the API is served (issue 11, item 2)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fleetloop.devbroker import free_port
from hub.app.artifacts import check_artifact
from hub.app.settings import HubSettings
from hub.app.wiring import artifact_url
from hub.errors import ArtifactUnreachable


def settings(**values: object) -> HubSettings:
    return HubSettings(dev_mode=True, **values)  # type: ignore[arg-type]


def test_derived_from_the_api_port_unless_set() -> None:
    assert artifact_url(settings(api_port=18000), "v2") == "http://127.0.0.1:18000/models/v2/artifact"  # before: 8000
    assert settings().artifact_base == "http://127.0.0.1:8000"
    assert settings(api_host="0.0.0.0", api_port=9000).artifact_base == f"http://{socket.getfqdn()}:9000"
    assert settings(api_host="::1", api_port=9000).artifact_base == "http://[::1]:9000"
    explicit = settings(api_port=18000, artifact_base_url="http://hub.plant:8080/")
    assert artifact_url(explicit, "v2") == "http://hub.plant:8080/models/v2/artifact"


def test_an_unreachable_url_is_refused_with_the_url_and_the_fix(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/models/v2/artifact"
    with pytest.raises(ArtifactUnreachable, match="does not answer") as refused:
        check_artifact("v2", url, timeout_s=5)
    assert url in str(refused.value) and "FLEETLOOP_HUB_ARTIFACT_BASE_URL" in str(refused.value)
    with pytest.raises(ArtifactUnreachable, match="not at"):
        check_artifact("v2", (tmp_path / "nowhere").as_uri())
    check_artifact("v2", tmp_path.as_uri())  # a file:// directory that exists
