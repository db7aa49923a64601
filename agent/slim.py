"""Trim an agent install to what a gateway runs: ``fleetloop agent slim``.

pip installs each wheel whole, and two of the agent's wheels carry large parts a gateway never runs:

- **onnxruntime's C-API library** (``onnxruntime/capi/libonnxruntime.so.*``, ~35 MB on x86-64): a second copy of the
  runtime for programs that link onnxruntime from C. The Python module (``onnxruntime_pybind11_state``) has the
  runtime built in and does not link it; that is checked before the file is touched (the module must not name it).
- **onnxruntime's model tooling** (the ``transformers``, ``quantization`` and ``tools`` packages, ~9 MB): graph
  optimisers and quantisers, which run where models are made, never at inference.
- **numpy's test suites** (every ``tests`` package under ``numpy``, ~17 MB).

With them gone the agent install is ~112 MB on x86-64 instead of ~167, and ~93 MB instead of ~129 on aarch64
(``bench/agent.py`` reports both). Nothing the agent imports is removed: the Dockerfile's agent image is slimmed
this way and the compose fleet runs from it, and ``tests/agent/test_slim.py`` scores a model from a slimmed copy.
What was removed is listed, with its size, in ``FLEETLOOP_SLIM`` inside each distribution's ``.dist-info`` (and RECORD
names that list, as it names the files pip itself adds there, so ``pip uninstall`` removes it too); ``pip install
--force-reinstall --no-deps onnxruntime==V numpy==V`` puts the files back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path, PurePosixPath

MARKER = "FLEETLOOP_SLIM"
ORT_TOOLING = ("transformers", "quantization", "tools")
_PYBIND_PREFIX = "onnxruntime_pybind11_state"
_CAPI_NAME = b"libonnxruntime.so"


def removable(dist: str, path: PurePosixPath) -> str | None:
    """Why `path` (as a distribution's RECORD names it) is not needed on a gateway, or None to keep it. Pure: the
    check that onnxruntime's Python module does not link its C-API library is `capi_removable`'s."""
    parts = path.parts
    if dist == "onnxruntime" and len(parts) >= 2 and parts[0] == "onnxruntime":
        if parts[1] in ORT_TOOLING and len(parts) > 2:
            return f"onnxruntime model tooling ({parts[1]})"
        if parts[1] == "capi" and len(parts) == 3 and parts[2].startswith("libonnxruntime.so"):
            return "onnxruntime C-API library (the Python module has the runtime built in)"
    if dist == "numpy" and parts and parts[0] == "numpy" and "tests" in parts[1:-1]:
        return "numpy test suite"
    return None


def capi_unlinked(pybind_module: bytes) -> bool:
    """True if onnxruntime's Python extension module does not name the C-API library (so cannot load it)."""
    return _CAPI_NAME not in pybind_module


def capi_removable(files: Iterable[tuple[str, Callable[[], bytes | None]]]) -> bool:
    """Whether onnxruntime's C-API library may go, given its distribution's files (an install's or a wheel's) as
    (file name, reader) pairs, the reader giving the file's bytes or None if it cannot: only if a Python extension
    module is among them and none names the library (`capi_unlinked`). Unsure (no module, one unreadable) keeps it."""
    found = False
    for name, read in files:
        if name.startswith(_PYBIND_PREFIX) and PurePosixPath(name).suffix in (".so", ".pyd"):
            module = read()
            if module is None or not capi_unlinked(module):
                return False
            found = True
    return found


@dataclass(frozen=True)
class Removal:
    dist: str
    version: str
    path: Path  # the file
    name: str  # as the distribution's RECORD names it
    info: Path  # the distribution's .dist-info directory
    size: int
    reason: str


def plan(site: Path | None = None) -> list[Removal]:
    """The files `removable` picks from the installed numpy and onnxruntime (of `site`, a site-packages or
    ``pip install --target`` directory, else this interpreter's) that exist."""
    found: list[Removal] = []
    for dist in ("onnxruntime", "numpy"):
        found += _plan_dist(dist, site)
    return found


def _plan_dist(dist: str, site: Path | None) -> list[Removal]:
    if site is not None:
        distribution = next(iter(metadata.distributions(name=dist, path=[str(site)])), None)
    else:
        try:
            distribution = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            distribution = None
    if distribution is None:
        return []
    files = list(distribution.files or [])
    located = {str(f): Path(str(distribution.locate_file(f))) for f in files}
    record = next((f for f in files if f.name == "RECORD" and str(f.parent).endswith(".dist-info")), None)
    if record is None:
        return []
    info = located[str(record)].parent
    capi_goes = dist == "onnxruntime" and capi_removable((f.name, partial(_read, located[str(f)])) for f in files)
    found = []
    for f in files:
        reason = removable(dist, PurePosixPath(str(f)))
        if reason is None or ("C-API" in reason and not capi_goes):
            continue
        path = located[str(f)]
        if path.is_file() and not path.is_symlink():
            found.append(Removal(dist, distribution.version, path, str(f), info, path.stat().st_size, reason))
    return found


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def apply(removals: Iterable[Removal]) -> int:
    """Delete the files and the directories they leave empty, and list them in each distribution's
    ``FLEETLOOP_SLIM`` (what was deleted is listed even when a later file fails). Returns the bytes freed. An
    OSError (say, no permission) propagates with its path."""
    freed = 0
    done: dict[Path, list[dict[str, object]]] = {}
    dirs: set[Path] = set()
    try:
        for r in removals:
            r.path.unlink()
            freed += r.size
            done.setdefault(r.info, []).append({"file": r.name, "bytes": r.size})
            dirs.add(r.path.parent)
    finally:
        for info, names in done.items():
            _note(info, names)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):  # deepest first: parents empty after
        for parent in (d, *d.parents):
            try:
                parent.rmdir()
            except OSError:
                break  # not empty: what is left there is still needed
    return freed


def _note(info: Path, files: list[dict[str, object]]) -> None:
    """Add `files` (name and bytes) to the dist-info's FLEETLOOP_SLIM, and the list itself to its RECORD the first
    time."""
    marker = info / MARKER
    first = not marker.is_file()
    previous: list[dict[str, object]] = [] if first else json.loads(marker.read_text())
    marker.write_text(json.dumps(previous + files) + "\n")
    record = info / "RECORD"
    if first and record.is_file():  # a new file, then renamed over RECORD: never writes into a file it shares
        text = record.read_text(encoding="utf-8")
        staged = record.with_name("RECORD.fleetloop-slim")
        staged.write_text(text + ("" if text.endswith("\n") else "\n") + f"{info.name}/{MARKER},,\n", encoding="utf-8")
        os.replace(staged, record)


def removed(site: Path | None = None) -> dict[str, list[str]]:
    """What earlier slims removed, per distribution (the files their FLEETLOOP_SLIM lists name)."""
    out: dict[str, list[str]] = {}
    for dist in ("onnxruntime", "numpy"):
        found = (metadata.distributions(name=dist, path=[str(site)]) if site is not None
                 else metadata.distributions(name=dist))
        for distribution in found:
            files = removed_files(distribution)
            if files:
                out[dist] = [name for name, _ in files]
            break
    return out


def removed_files(distribution: metadata.Distribution) -> list[tuple[str, int]]:
    """(file, bytes) an earlier slim removed from `distribution` ([] if none): what its size was as installed."""
    text = distribution.read_text(MARKER)
    return [(str(f["file"]), int(f["bytes"])) for f in json.loads(text)] if text else []
