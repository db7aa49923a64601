"""The CLI's requests to endpoints other helpers own (`POST /models`, `/drift/reference`, `/rollouts/revert`,
`/rollouts/{id}/retry`), checked against the agreed contract with an in-memory transport (httpx.MockTransport):
pure request building, no hub. Endpoints that exist in the hub are tested against a real one in
test_cli_client.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetloop.cli import main
from hub.app import commands
from hub.app.client import HubClient

ROLLOUTS = [{"id": "ro-0197aa-1111"}, {"id": "ro-0197aa-2222"}]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    """Requests the CLI sends (method, path, JSON body); answers as the contract says."""
    calls: list[tuple[str, str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
        if request.method == "GET" and request.url.path == "/rollouts":
            return httpx.Response(200, json=ROLLOUTS)
        if request.url.path == "/models":
            return httpx.Response(201, json={"version": "v7", "status": "candidate", "gate_verdict": "skipped"})
        if request.url.path.endswith("/skip-gate"):
            return httpx.Response(200, json={"version": "v7", "status": "candidate", "gate_verdict": "skipped"})
        if request.url.path == "/retrain":
            return httpx.Response(202, json={"job_id": "job-1", "total_labels": 9, "new_labels": 4})
        if request.url.path.startswith("/drift/reference"):
            return httpx.Response(200, json={"version": "v1", "windows": 12, "taken_by": "operator", "ts": 0.0})
        return httpx.Response(201, json={"id": "ro-x", "candidate": "v1", "incumbent": "v2", "status": "running",
                                         "stage": "canary", "paused": False, "limits": {}, "stages": []})

    monkeypatch.setattr(commands, "_client", lambda args: HubClient("http://hub.test", "t" * 20,
                                                                    transport=httpx.MockTransport(answer)))
    return calls


def test_register_sends_an_absolute_path_and_the_skip(sent: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["hub", "models", "--register", "v7", "--skip-gate", "--reason", "hotfix"]) == 0
    assert sent == [("POST", "/models", {"path": str(tmp_path / "v7"), "reason": "hotfix", "skip_gate": True})]
    assert "registered v7 (candidate), signed; gate: skipped" in capsys.readouterr().out
    assert main(["hub", "models", "--register", "v7"]) == 2  # a registration says why
    assert "--reason" in capsys.readouterr().err
    # a registered version the gate could not judge, cleared with a reason (POST /models/{version}/skip-gate)
    sent.clear()
    assert main(["hub", "models", "v7", "--skip-gate", "--reason", "regimes checked"]) == 0
    assert sent == [("POST", "/models/v7/skip-gate", {"reason": "regimes checked"})]
    assert "v7: gate skipped, candidate (audited)" in capsys.readouterr().out
    assert main(["hub", "models", "v7", "--skip-gate"]) == 2
    assert "--skip-gate needs --reason" in capsys.readouterr().err
    assert main(["hub", "models", "--skip-gate", "--reason", "x"]) == 2
    assert "a registered VERSION" in capsys.readouterr().err


def test_reference_take_sends_the_window_in_unix_seconds(sent: list, capsys: pytest.CaptureFixture[str]) -> None:
    before = time.time()
    assert main(["hub", "reference", "take", "v1", "--start", "-2h", "--devices", "dev-1,dev-2",
                 "--reason", "healthy week"]) == 0
    method, path, body = sent[0]
    assert (method, path) == ("POST", "/drift/reference")
    assert body["version"] == "v1" and body["devices"] == ["dev-1", "dev-2"] and body["reason"] == "healthy week"
    assert before - 7200 - 1 <= body["start"] <= time.time() - 7200 and body["end"] - body["start"] == pytest.approx(
        7200, abs=1)
    assert "windows: 12" in capsys.readouterr().out
    assert main(["hub", "reference", "take", "v1", "--start", "2024-11-23T10:00:00Z", "--end", "2024-11-23T12:00:00",
                 "--reason", "r"]) == 0
    assert (sent[-1][2]["start"], sent[-1][2]["end"]) == (1732356000.0, 1732363200.0)
    assert main(["hub", "reference", "show", "v1"]) == 0 and sent[-1][:2] == ("GET", "/drift/reference/v1")


def test_retrain_sends_where_the_regimes_come_from_only_when_asked(sent: list,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "retrain", "--reason", "new regimes", "--regimes", "field", "--no-wait"]) == 0
    assert sent[-1] == ("POST", "/retrain", {"reason": "new regimes", "regimes": "field"})
    assert "retrain job job-1 queued" in capsys.readouterr().out
    assert main(["hub", "retrain", "--reason", "again", "--no-wait"]) == 0
    assert sent[-1] == ("POST", "/retrain", {"reason": "again"})


def test_revert_and_retry_by_prefix(sent: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "rollout", "revert", "--reason", "v2 misses faults"]) == 0
    assert sent[-1] == ("POST", "/rollouts/revert", {"reason": "v2 misses faults"})
    assert main(["hub", "rollout", "retry", "ro-0197aa-2", "--reason", "artifact server was down"]) == 0
    assert sent[-1] == ("POST", "/rollouts/ro-0197aa-2222/retry", {"reason": "artifact server was down"})
    assert main(["hub", "rollout", "retry", "ro-0197", "--reason", "x"]) == 1  # two rollouts start with it
    assert "ambiguous" in capsys.readouterr().err


@pytest.mark.parametrize(("status", "code"), [(400, 1), (409, 1), (422, 1), (500, 3), (503, 3)])
def test_http_statuses_become_exit_codes(status: int, code: int, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    detail: Any = [{"loc": ["body", "reason"], "msg": "Field required"}] if status == 422 else "no way"
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json={"detail": detail}))
    monkeypatch.setattr(commands, "_client", lambda args: HubClient("http://hub.test", None, transport=transport))
    assert main(["hub", "devices"]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"({status})" in err
    assert ("reason: Field required" if status == 422 else "no way") in err
