"""Fetching a model artifact: a directory, a file archive or HTTP; bounded downloads, safe extraction."""

from __future__ import annotations

import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.models.fetch import UrlFetcher
from shared.errors import ModelIntegrityError, ModelLoadError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE
from tests.agent.models.test_manager import pack


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
