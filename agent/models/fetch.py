"""Fetching a model version named by an assignment's url: ``file://`` or ``http(s)://``.

``file://`` may name a version directory or a ``.tar.gz``; ``http(s)://`` must serve a ``.tar.gz`` (the hub's
``GET /models/{version}/artifact``) holding ``model.onnx``, ``manifest.json`` and ``manifest.sig``, at the
top level or under one directory. Downloads are streamed, bounded in size and time, and extracted safely:
only those three names, as regular files; absolute paths, ``..``, links and devices refuse the archive.

Nothing here verifies a model: the fetcher only delivers bytes into a staging directory that the model
store then checks (sha256, signature) before anything points at it. tarfile is imported when an archive is
unpacked, not when the agent starts (urllib.request is loaded by paho and onnxruntime anyway).
"""

from __future__ import annotations

import logging
import shutil
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from shared.errors import ModelIntegrityError, ModelLoadError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE

log = logging.getLogger(__name__)

ARTIFACT_FILES = frozenset({MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE})
VERSION_SUBDIR = "version"
CHUNK_BYTES = 64 * 1024


class ArtifactFetcher(Protocol):
    """Puts the model version at `url` into the empty directory `dest_dir`; returns the version directory.

    Raises ModelLoadError when the artifact cannot be fetched (worth retrying later) and
    ModelIntegrityError when what arrived must never be used (an unsafe or oversized archive).
    """

    def fetch(self, url: str, dest_dir: Path) -> Path: ...


class UrlFetcher:
    """`ArtifactFetcher` for ``file://`` and ``http(s)://`` urls (urllib; no extra dependency)."""

    def __init__(
        self,
        *,
        timeout_s: float = 30.0,
        max_bytes: int = 256 * 1024 * 1024,
        max_seconds: float = 900.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.timeout_s = timeout_s  # per blocking socket operation
        self.max_bytes = max_bytes  # downloaded archive, and extracted files, each at most
        self.max_seconds = max_seconds  # the whole download
        self.headers = {"User-Agent": "fleetloop-agent", **(headers or {})}

    def fetch(self, url: str, dest_dir: Path) -> Path:
        parts = urlsplit(url)
        out = dest_dir / VERSION_SUBDIR
        out.mkdir()
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ModelLoadError(f"file url {url!r} names a remote host")
            path = Path(url2pathname(parts.path))
            if path.is_dir():
                self._copy_dir(path, out)
            elif path.is_file():
                extract_artifact(path, out, self.max_bytes)
            else:
                raise ModelLoadError(f"{path} does not exist")
        elif parts.scheme in ("http", "https"):
            archive = dest_dir / "artifact.tar.gz"
            self._download(url, archive)
            extract_artifact(archive, out, self.max_bytes)
            archive.unlink()
        else:
            raise ModelLoadError(f"cannot fetch {url!r}: only file://, http:// and https:// urls are supported")
        return out

    def _copy_dir(self, source: Path, out: Path) -> None:
        for name in sorted(ARTIFACT_FILES):
            src = source / name
            if not src.is_file():
                continue
            if src.stat().st_size > self.max_bytes:
                raise ModelIntegrityError(f"{src} is larger than the {self.max_bytes}-byte limit")
            shutil.copyfile(src, out / name)

    def _download(self, url: str, target: Path) -> None:
        request = urllib.request.Request(url, headers=self.headers)
        deadline = time.monotonic() + self.max_seconds
        received = 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response, target.open("wb") as fh:
                declared = response.headers.get("Content-Length")
                expected = int(declared) if declared and declared.isdigit() else None
                if expected is not None and expected > self.max_bytes:
                    raise ModelIntegrityError(f"{url}: {expected} bytes exceeds the {self.max_bytes}-byte limit")
                read = getattr(response, "read1", response.read)  # what has arrived, not a full chunk
                while chunk := read(CHUNK_BYTES):
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise ModelIntegrityError(f"{url}: more than the {self.max_bytes}-byte limit")
                    if time.monotonic() > deadline:
                        raise ModelLoadError(f"{url}: download took longer than {self.max_seconds:.0f} s")
                    fh.write(chunk)
        except urllib.error.HTTPError as exc:
            raise ModelLoadError(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, reset, timeout, bad url
            raise ModelLoadError(f"GET {url} failed after {received} bytes: {exc}") from None
        if expected is not None and received != expected:
            raise ModelLoadError(f"GET {url}: got {received} of {expected} bytes")
        log.info("downloaded %s (%d bytes)", url, received)


def _member_name(name: str) -> tuple[str | None, str]:
    """(top directory or None, file name) of a safe member path; ModelIntegrityError for an unsafe one."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        raise ModelIntegrityError(f"the artifact has an unsafe path {name!r}")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise ModelIntegrityError(f"the artifact has an unsafe path {name!r}")
    if not parts or len(parts) > 2:
        raise ModelIntegrityError(f"unexpected path {name!r} in the artifact (files go at the top or in one dir)")
    return (parts[0] if len(parts) == 2 else None), parts[-1]


def extract_artifact(archive: Path, out: Path, max_bytes: int) -> None:
    """Extract the artifact files of a (gzipped) tar into `out`, refusing anything unsafe."""
    import tarfile

    seen: set[str] = set()
    tops: set[str | None] = set()
    total = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isdir():
                    if member.name.strip("./"):
                        _member_name(member.name.rstrip("/"))  # refuses an unsafe or deep directory
                    continue
                top, name = _member_name(member.name)
                if not member.isreg():
                    raise ModelIntegrityError(f"the artifact's {member.name!r} is a link or special file")
                if name not in ARTIFACT_FILES:
                    log.info("ignoring %s in the artifact", member.name)
                    continue
                if name in seen:
                    raise ModelIntegrityError(f"the artifact holds {name} twice")
                tops.add(top)
                seen.add(name)
                total += member.size
                if total > max_bytes:
                    raise ModelIntegrityError(f"the artifact unpacks to more than {max_bytes} bytes")
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has a payload
                with source, (out / name).open("wb") as fh:
                    _copy_bounded(source, fh, member.size)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ModelLoadError(f"{archive.name} is not a readable .tar.gz: {exc}") from None
    if len(tops) > 1:
        raise ModelIntegrityError("the artifact's files are spread over several directories")
    if MODEL_FILE not in seen or MANIFEST_FILE not in seen:
        raise ModelLoadError(f"the artifact has no {MODEL_FILE} and {MANIFEST_FILE}")


def _copy_bounded(source: IO[bytes], target: IO[bytes], size: int) -> None:
    remaining = size
    while remaining > 0:
        chunk = source.read(min(CHUNK_BYTES, remaining))
        if not chunk:
            raise ModelLoadError("the artifact is truncated")
        target.write(chunk)
        remaining -= len(chunk)
