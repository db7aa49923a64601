"""The pieces of model assignment without a broker: fetching, safe extraction, checks, the health verdict."""

from __future__ import annotations

import io
import shutil
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.db import AgentDB
from agent.models.fetch import UrlFetcher
from agent.models.manager import (
    HealthCriteria,
    HealthEvidence,
    Job,
    Preparer,
    Ready,
    check_artifact,
    health_verdict,
)
from agent.models.store import ModelStore
from hub.registry.signing import SigningKey
from shared.errors import ModelIntegrityError, ModelLoadError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE
from shared.messages import Assign
from tests.agent.models.test_assign import assignment, pack, signed_variant


@pytest.fixture(scope="module")
def key():
    return SigningKey.generate()


@pytest.fixture(scope="module")
def v2(tmp_path_factory, initial_model_dir, key):
    return signed_variant(initial_model_dir, tmp_path_factory.mktemp("units") / "v2", "v2", key)


def _tar(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def http_server():
    """Serves `routes[path] = bytes` on a free loopback port; unknown paths are 404."""
    routes: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.routes = routes  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def test_fetch_a_directory_a_file_archive_and_an_http_archive(tmp_path, v2, http_server):
    fetcher = UrlFetcher(timeout_s=5)
    archive = tmp_path / "v2.tar.gz"
    archive.write_bytes(pack(v2))
    http_server.routes["/models/v2/artifact"] = pack(v2, top="v2")
    for i, url in enumerate([v2.as_uri(), archive.as_uri(), f"{http_server.url}/models/v2/artifact"]):
        dest = tmp_path / f"d{i}"
        dest.mkdir()
        out = fetcher.fetch(url, dest)
        assert sorted(p.name for p in out.iterdir()) == sorted([MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE])
        assert (out / MODEL_FILE).read_bytes() == (v2 / MODEL_FILE).read_bytes()
    dest = tmp_path / "e"
    dest.mkdir()
    with pytest.raises(ModelLoadError, match="HTTP 404"):
        fetcher.fetch(f"{http_server.url}/models/nope/artifact", dest)


def test_downloads_are_bounded_and_odd_urls_refused(tmp_path, v2, http_server):
    http_server.routes["/big"] = pack(v2)
    small = UrlFetcher(timeout_s=5, max_bytes=1000)
    for i, (url, error, match) in enumerate([
        (f"{http_server.url}/big", ModelIntegrityError, "limit"),
        ("ftp://example.com/v2.tar.gz", ModelLoadError, "only file://"),
        ("file://otherhost/v2", ModelLoadError, "remote host"),
        ("http://127.0.0.1:1/refused", ModelLoadError, "failed"),
    ]):
        dest = tmp_path / str(i)
        dest.mkdir()
        with pytest.raises(error, match=match):
            small.fetch(url, dest)


@pytest.mark.parametrize(("members", "symlink", "match"), [
    ({"../model.onnx": b"x", "manifest.json": b"{}"}, None, "unsafe path"),
    ({"/abs/model.onnx": b"x", "manifest.json": b"{}"}, None, "unsafe path"),
    ({"a/b/model.onnx": b"x", "manifest.json": b"{}"}, None, "unexpected path"),
    ({"model.onnx": b"x", "manifest.json": b"{}"}, "manifest.sig", "link or special"),
    ({"a/model.onnx": b"x", "b/manifest.json": b"{}"}, None, "several directories"),
])
def test_unsafe_archives_are_refused(tmp_path, members, symlink, match):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar(members, symlink=symlink))
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ModelIntegrityError, match=match):
        UrlFetcher().fetch(archive.as_uri(), dest)
    assert not (tmp_path / "model.onnx").exists() and not list(tmp_path.glob("abs*"))


def test_not_an_archive_is_a_load_error(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ModelLoadError, match="not a readable"):
        UrlFetcher().fetch(junk.as_uri(), dest)


def test_check_artifact_compares_the_assignment_manifest_and_file(tmp_path, v2, key):
    good = assignment(v2)
    check_artifact(v2, good, key.verifier())
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch: the assignment says"):
        check_artifact(v2, good.model_copy(update={"sha256": "0" * 64}), key.verifier())
    with pytest.raises(ModelIntegrityError, match="assigned v9"):
        check_artifact(v2, good.model_copy(update={"version": "v9"}), key.verifier())
    with pytest.raises(ModelIntegrityError, match="bad signature"):
        check_artifact(v2, good, SigningKey.generate().verifier())
    # an artifact without manifest.sig takes the assignment's signature
    bare = shutil.copytree(v2, tmp_path / "bare")
    (bare / SIGNATURE_FILE).unlink()
    check_artifact(bare, good, key.verifier())
    assert (bare / SIGNATURE_FILE).read_text().strip() == good.signature


def test_preparer_tells_transient_from_permanent_failures(tmp_path, v2, key, initial_model_dir):
    store = ModelStore(tmp_path / "models", AgentDB(tmp_path / "agent.db"), verifier=key.verifier())
    preparer = Preparer(store, UrlFetcher(timeout_s=2))
    ok = preparer.prepare(Job("v2", assignment(v2)))
    assert isinstance(ok, Ready) and ok.model.version == "v2"
    gone = preparer.prepare(Job("v2", assignment(v2, url="http://127.0.0.1:1/v2")))
    assert not isinstance(gone, Ready) and gone.retry and gone.reason.startswith("fetch:")
    bad = preparer.prepare(Job("v2", assignment(v2, sha256="1" * 64)))
    assert not isinstance(bad, Ready) and not bad.retry and "sha256" in bad.reason
    unsigned = preparer.prepare(Job("v1", Assign(ts=1.0, version="v1", mode="active", sha256=_sha(initial_model_dir),
                                                  signature="", url=initial_model_dir.as_uri())))
    assert not isinstance(unsigned, Ready) and not unsigned.retry and "not signed" in unsigned.reason
    assert not list((tmp_path / "models" / ".staging").iterdir())  # staging is cleaned after every job


def _sha(version_dir):
    import json

    return json.loads((version_dir / MANIFEST_FILE).read_text())["onnx_sha256"]


def test_health_verdict():
    criteria = HealthCriteria(windows=3, latency_ms=10.0)
    evidence = HealthEvidence()
    assert health_verdict(evidence, criteria)[0] == "pending"
    for _ in range(3):
        evidence.add(error=False, finite=True, latency_s=0.001)
    assert health_verdict(evidence, criteria)[0] == "ok"
    slow = HealthEvidence()
    for _ in range(3):
        slow.add(error=False, finite=True, latency_s=0.05)
    verdict, reason = health_verdict(slow, criteria)
    assert verdict == "failed" and "latency" in reason
    nan = HealthEvidence()
    nan.add(error=False, finite=False, latency_s=0.001)
    assert health_verdict(nan, criteria) == ("failed", "1 NaN/inf score(s) in 1 windows")
    err = HealthEvidence()
    err.add(error=True, finite=False, latency_s=0.001)
    assert health_verdict(err, criteria)[0] == "failed" and err.metrics()["inference_errors"] == 1.0
