"""The background preparer: a loaded model, or a reason that says whether fetching again is worth it."""

from __future__ import annotations

from agent.db import AgentDB
from agent.models.fetch import UrlFetcher
from agent.models.prepare import Job, Preparer, Ready
from agent.models.store import ModelStore
from shared.manifest import MANIFEST_FILE
from shared.messages import Assign
from tests.agent.models.test_manager import assignment


def test_preparer_tells_transient_from_permanent_failures(tmp_path, v2, key, initial_model_dir):
    store = ModelStore(tmp_path / "models", AgentDB(tmp_path / "agent.db"), verifier=key.verifier())
    preparer = Preparer(store, UrlFetcher(timeout_s=2))
    ok = preparer.prepare(Job("v2", assignment(v2)))
    assert isinstance(ok, Ready) and ok.model.version == "v2"
    gone = preparer.prepare(Job("v2", assignment(v2, url="http://127.0.0.1:1/v2")))
    assert not isinstance(gone, Ready) and gone.retry and gone.reason.startswith("fetch:")
    # what arrived is not what was assigned: a tampered download or mirror, not the version, is at fault: retried,
    # and the sha256 of the bytes received is reported (refusals are keyed by it, never by the assigned one)
    bad = preparer.prepare(Job("v2", assignment(v2, sha256="1" * 64)))
    assert not isinstance(bad, Ready) and bad.retry and "sha256" in bad.reason and bad.received == _sha(v2)
    unsigned = preparer.prepare(Job("v1", Assign(ts=1.0, version="v1", mode="active", sha256=_sha(initial_model_dir),
                                                  signature="", url=initial_model_dir.as_uri())))
    assert not isinstance(unsigned, Ready) and unsigned.retry and "not signed" in unsigned.reason
    assert not list((tmp_path / "models" / ".staging").iterdir())  # staging is cleaned after every job


def _sha(version_dir):
    import json

    return json.loads((version_dir / MANIFEST_FILE).read_text())["onnx_sha256"]
