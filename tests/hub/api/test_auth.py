"""Bearer tokens and roles: 401 without a known token, 403 for the wrong role, open access only in dev mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from hub.api import create_app
from hub.api.deps import find_role, require
from hub.app.settings import HubSettings
from hub.store.sqlite import SqliteHubStore
from shared.errors import ConfigError
from tests.hub.api.conftest import TOKEN, TOKENS, Hub, anomaly, online, running_hub

ANNOTATION = {"trace_id": "t", "device_id": "pump-1", "label": "fault", "technician_id": "tech"}


def test_no_token_and_unknown_token_are_401_with_a_bearer_challenge(hub: Hub) -> None:
    for client, detail in [
        (hub.client(), "missing bearer token: send Authorization: Bearer <token>"),
        (hub.client(token="not-a-real-token-but-long-enough"), "unknown bearer token"),
        (hub.client(token=TOKEN["operator"] + "x"), "unknown bearer token"),
    ]:
        for method, path in [("GET", "/devices"), ("POST", "/labels/validate"), ("GET", "/queue")]:
            response = client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json() == {"detail": detail}
    basic = hub.client()
    response = basic.get("/devices", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


def test_technician_cannot_call_operator_routes(hub: Hub) -> None:
    response = hub.client("technician").post("/labels/validate")
    assert response.status_code == 403
    assert response.json() == {"detail": "this endpoint needs the role operator; your token has the role technician"}


def test_viewer_reads_but_cannot_annotate_or_work_the_queue(hub: Hub) -> None:
    hub.ingest(online(), anomaly())
    viewer = hub.client("viewer")
    response = viewer.post("/annotations", json=ANNOTATION)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "this endpoint needs the role technician or operator; your token has the role viewer"
    }
    assert viewer.get("/queue").status_code == 403
    assert viewer.post("/labels/validate").status_code == 403
    for path in ["/devices", "/devices/pump-1", "/annotations", "/drift", "/labels/sets", "/labels/conflicts",
                 "/labels/pending"]:
        assert viewer.get(path).status_code == 200, path
    assert hub.store.annotations() == []


def test_each_role_gets_what_it_may(hub: Hub) -> None:
    hub.ingest(online())
    expected = {  # (POST /annotations, GET /queue, POST /labels/validate)
        "technician": (201, 200, 403),
        "operator": (201, 200, 201),
        "viewer": (403, 403, 403),
    }
    for role, codes in expected.items():
        client = hub.client(role)
        got = (
            client.post("/annotations", json={**ANNOTATION, "trace_id": f"trace-{role}"}).status_code,
            client.get("/queue").status_code,
            client.post("/labels/validate").status_code,
        )
        assert got == codes, role


def test_metrics_and_health_need_no_token(hub: Hub) -> None:
    anonymous = hub.client()
    assert anonymous.get("/metrics").status_code == 200
    assert anonymous.get("/health").status_code == 200


def test_dev_mode_without_tokens_is_open_as_operator(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="hub.api.app"), running_hub(tmp_path / "hub.db", tokens={},
                                                                         dev_mode=True) as hub:
        assert "WITHOUT API TOKENS" in caplog.text
        anonymous = hub.client()
        assert anonymous.post("/labels/validate").status_code == 201
        assert anonymous.get("/queue").status_code == 200


def test_dev_mode_with_tokens_still_requires_them(tmp_path: Path) -> None:
    with running_hub(tmp_path / "hub.db", dev_mode=True) as hub:
        assert hub.client().get("/devices").status_code == 401
        assert hub.client("viewer").get("/devices").status_code == 200


def test_create_app_refuses_open_access_outside_dev_mode(tmp_path: Path) -> None:
    valid = HubSettings(dev_mode=False, tokens=TOKENS, mqtt_password=SecretStr("secret"))
    settings = valid.model_copy(update={"tokens": {}})  # as if validation had been skipped
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        with pytest.raises(ConfigError, match="needs API tokens outside dev mode"):
            create_app(settings, store)
    finally:
        store.close()


def test_find_role_and_require() -> None:
    assert find_role(TOKENS, TOKEN["viewer"]) == "viewer"
    assert find_role(TOKENS, "") is None
    assert find_role(TOKENS, "ünïcode-is-fine-too-0123456789") is None
    with pytest.raises(ValueError, match="needs roles among"):
        require()
    with pytest.raises(ValueError, match="needs roles among"):
        require("admin")  # type: ignore[arg-type]
