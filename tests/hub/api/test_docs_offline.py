"""``/docs`` and ``/redoc`` work air-gapped: every asset they load is served by the hub itself (issue 11, item 9)."""

from __future__ import annotations

import re

import pytest

from tests.hub.api.conftest import Hub

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_nothing_from_outside_and_every_asset_is_served(hub: Hub, page: str) -> None:
    client = hub.client()
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\s\"'<>]+", html)  # before: cdn.jsdelivr.net
    assets = {a or b for a, b in ASSET.findall(html)}
    scripts = {a for a in assets if a.endswith(".js")}
    assert scripts, f"{page} loads no script: {html[:500]}"
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, f"{page} references {asset}, which the hub does not serve"
        assert served.content, asset
    assert client.get("/openapi.json").json()["info"]["title"] == "fleetloop hub"
