"""`fleetloop hub incidents …` against the real hub API (uvicorn, real SQLite): list, show, ack, resolve one and
many, report a missed failure; refusals are one line and exit 1, usage errors exit 2."""

from __future__ import annotations

import json
import os

import pytest

from fleetloop.cli import main
from tests.hub.api.conftest import TOKEN, Hub, anomaly, hub, online  # noqa: F401 (the `hub` fixture)

T0 = 1_700_000_000.0


@pytest.fixture
def cli(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:  # noqa: F811
    for key in [k for k in os.environ if k.startswith("FLEETLOOP_HUB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FLEETLOOP_HUB_URL", hub.url)
    monkeypatch.setenv("FLEETLOOP_HUB_TOKEN", TOKEN["technician"])
    for n, device in enumerate(("pump-1", "pump-2")):
        hub.ingest(online(device, site="plant-a"), *[anomaly(device, ts=T0 + 100 * n + i) for i in range(3)])
    assert hub.services.incidents is not None
    hub.services.incidents.run(hub.clock.now)
    return hub


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    assert main(["hub", "incidents", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_technician_works_incidents_from_the_shell(cli: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "incidents", "list", "--site", "plant-a"]) == 0
    table = capsys.readouterr().out
    assert "pump-1" in table and "pump-2" in table and "open" in table and "2023-11-14T22:13:20Z" in table
    rows = _json(capsys, ["list", "--device", "pump-1"])
    assert isinstance(rows, list) and [r["device_id"] for r in rows] == ["pump-1"]
    first = rows[0]["id"]
    assert _json(capsys, ["ack", first, "--technician", "alice"])["state"] == "acknowledged"  # type: ignore[index]
    second = _json(capsys, ["list", "--device", "pump-2"])[0]["id"]  # type: ignore[index]
    assert main(["hub", "incidents", "resolve", first, second, "ghost", "--technician", "alice", "--verdict",
                 "false_alarm"]) == 1
    out = capsys.readouterr().out
    assert f"{first}: resolved" in out and f"{second}: resolved" in out and "ghost: 404 no incident ghost" in out
    shown = _json(capsys, ["show", first])
    assert shown["verdict"] == "false_alarm" and len(shown["window_traces"]) == 3  # type: ignore[index]
    missed = _json(capsys, ["missed", "--device", "pump-1", "--start", str(T0 + 5000), "--end", str(T0 + 6000),
                            "--fault-type", "seal", "--technician", "bob"])
    assert (missed["kind"], missed["fault_type"]) == ("missed_failure", "seal")  # type: ignore[index]
    assert len(_json(capsys, ["list", "--state", "resolved"])) == 3  # type: ignore[arg-type]


def test_refusals_and_usage_errors_are_one_line(cli: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    first = _json(capsys, ["list", "--device", "pump-1"])[0]["id"]  # type: ignore[index]
    assert main(["hub", "incidents", "resolve", first, "--technician", "a", "--verdict", "confirmed_fault"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fault_type" in err
    assert main(["hub", "incidents", "ack", first]) == 2
    assert "needs --technician" in capsys.readouterr().err
    assert main(["hub", "incidents", "show"]) == 2
    assert "needs an incident id" in capsys.readouterr().err
