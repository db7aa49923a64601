"""Hand the kernel back the library pages the agent touched only while it started.

Loading onnxruntime runs its static initialisers across most of its 35 MB library: ~23 MB of its code is
resident after `import onnxruntime`, though scoring a tree ensemble uses a small part of it (numpy and the
interpreter are alike, on a smaller scale). Those pages are clean copies of the files on disk, so after the
agent has settled, `release_library_pages` asks the kernel to reclaim them (``madvise(MADV_PAGEOUT)``, Linux
5.4+): the pages scoring still uses come straight back (minor faults from the page cache, or a read from the SD
card if the cache dropped them: a one-off cost, which is why the agent never releases while a swapped-in model is
under its health check), the rest stay out. Measured on x86_64 with the sim source: resident memory
91 -> 47 MB at once, ~59 MB once scoring has touched what it needs (`bench/agent.py`'s ``run_rss_mb``).

The kernel pages out a file's pages only for a process that owns the file or may write it (Linux since 2021, so a
process cannot evict another user's pages as a side channel): an agent whose libraries belong to another user (a
venv installed by root, an image's packages) keeps them all resident, and says so once with what to change. The
agent's user should own its install: the Dockerfile's agent image and the README's Raspberry Pi steps do that, and
systemd's ``ProtectSystem=strict`` keeps the running service from writing it anyway.

Only read-only, file-backed mappings without anonymous (copy-on-write) pages are advised, so nothing is ever
pushed to swap. The kernel leaves alone pages another process maps too: the drop is for an agent that is its
libraries' only user, as on a gateway; several agents on one host (or in containers of one image) share those pages
and keep them. Where the advice is unknown (older kernels, other systems, some emulators) nothing happens and
the agent runs as before. Standard library only (ctypes is imported when it runs).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # linux/mman-common.h, Linux 5.4+
SMAPS = Path("/proc/self/smaps")


# Warn when files of another user hold this share of the read-only file pages: in a well-installed agent the
# system's own python, libc and libcrypto hold ~7-9 MiB of ~25 (root owns them, and that is fine); a venv that
# belongs to another user holds nearly all of them (onnxruntime alone is ~20 MiB).
NOT_OWNED_WARN_SHARE = 0.5


@dataclass(frozen=True)
class Released:
    """What one release did: mappings advised, resident KiB before and right after, and the advised files this
    process does not own (the kernel keeps their pages for it), largest resident first, with their resident KiB."""

    mappings: int
    rss_before_kib: int
    rss_after_kib: int
    not_owned: tuple[str, ...] = ()
    not_owned_kib: int = 0
    file_kib: int = 0  # resident KiB of all read-only file mappings before the release

    @property
    def kept_for_owner(self) -> bool:
        """Files of another user hold so much that the agent's install should change hands."""
        return self.not_owned_kib > 0 and self.not_owned_kib >= NOT_OWNED_WARN_SHARE * self.file_kib

    def __str__(self) -> str:
        text = (f"released library pages of {self.mappings} mappings: resident "
                f"{self.rss_before_kib / 1024:.1f} -> {self.rss_after_kib / 1024:.1f} MiB")
        if self.kept_for_owner:
            text += (f"; the kernel keeps {self.not_owned_kib / 1024:.1f} of {self.file_kib / 1024:.1f} MiB of library "
                     f"pages, in {len(self.not_owned)} files this user "
                     f"(uid {os.geteuid()}) does not own, e.g. {self.not_owned[0]}: install the agent as the user it "
                     "runs as (README, 'Running an agent on a Raspberry Pi')")
        return text


class _Mapping(NamedTuple):
    """One mapping in smaps text: its header's range, permissions and path ('' when it has none) and the KiB its
    ``Rss`` and ``Anonymous`` lines count."""

    start: int
    end: int
    perms: str
    path: str
    rss_kib: int
    anonymous_kib: int

    @property
    def read_only_file(self) -> bool:
        """Backed by a file (not ``[heap]``, ``[vvar]`` or anonymous) and not writable."""
        return "w" not in self.perms and self.path.startswith("/")


def _mappings(smaps: str) -> Iterator[_Mapping]:
    """The mappings of `smaps` (``/proc/<pid>/smaps`` text) in order: the one parser of that text here."""
    header: tuple[int, int, str, str] | None = None
    rss = anonymous = 0
    for line in smaps.splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):  # a mapping's header: range perms offset dev inode [path]
            if header is not None:
                yield _Mapping(*header, rss, anonymous)
            fields = rest.split(None, 4)
            start, end = (int(x, 16) for x in head.split("-"))
            header = (start, end, fields[0], fields[4] if len(fields) == 5 else "")
            rss = anonymous = 0
        elif head == "Rss:":
            rss = int(rest.split()[0])
        elif head == "Anonymous:":
            anonymous = int(rest.split()[0])
    if header is not None:
        yield _Mapping(*header, rss, anonymous)


def clean_file_mappings(smaps: str) -> list[tuple[int, int]]:
    """(start, end) of the mappings in `smaps` (``/proc/<pid>/smaps`` text) that are read-only, backed by a file,
    resident and hold no anonymous (copied-on-write) pages: the ones whose pages can be dropped and re-read.

    >>> text = '''7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/libx.so
    ... Rss:                  16 kB
    ... Anonymous:             0 kB
    ... 7f10-7f20 r--p 00010000 08:01 42 /usr/lib/libx.so
    ... Rss:                   8 kB
    ... Anonymous:             4 kB
    ... 7f20-7f30 rw-p 00020000 08:01 42 /usr/lib/libx.so
    ... Rss:                   8 kB
    ... Anonymous:             0 kB
    ... 7f30-7f40 r--p 00000000 00:00 0
    ... Rss:                   4 kB
    ... Anonymous:             4 kB
    ... '''
    >>> [(hex(a), hex(b)) for a, b in clean_file_mappings(text)]
    [('0x7f00', '0x7f10')]
    """
    return [(m.start, m.end) for m in _mappings(smaps) if m.read_only_file and m.rss_kib > 0 and m.anonymous_kib == 0]


def not_owned_files(smaps: str, uid: int | None = None, min_kib: int = 256) -> tuple[list[tuple[int, str]], int]:
    """(resident KiB, path) of the read-only file mappings with at least `min_kib` resident whose file `uid`
    (default: this process's effective uid) does not own, largest first ([] for root, whom the kernel lets page
    out anything); and the resident KiB of all read-only file mappings."""
    uid = os.geteuid() if uid is None else uid
    resident: dict[str, int] = {}
    for m in _mappings(smaps):
        if m.read_only_file:
            resident[m.path] = resident.get(m.path, 0) + m.rss_kib
    total = sum(resident.values())
    if uid == 0:
        return [], total
    owners: list[tuple[int, str]] = []
    for name, kib in resident.items():
        try:
            if kib >= min_kib and os.stat(name).st_uid != uid:
                owners.append((kib, name))
        except OSError:  # deleted or unreadable since it was mapped
            continue
    return sorted(owners, reverse=True), total


def resident_kib() -> int:
    """This process's resident memory (VmRSS, KiB); 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def release_library_pages() -> Released | None:
    """Advise the kernel to reclaim this process's clean library pages (see the module doc). None where it cannot:
    not Linux, no /proc, or the kernel does not know ``MADV_PAGEOUT`` (then nothing changed)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        smaps_text = SMAPS.read_text()
        ranges = clean_file_mappings(smaps_text)
    except OSError as exc:
        log.debug("cannot read %s: %s", SMAPS, exc)
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    before, advised = resident_kib(), 0
    for start, end in ranges:
        advised += madvise(start, end - start, MADV_PAGEOUT) == 0
    if ranges and not advised:  # EINVAL throughout: the kernel does not know the advice
        log.info("the kernel refused MADV_PAGEOUT (errno %d): library pages stay resident", ctypes.get_errno())
        return None
    not_owned, file_kib = not_owned_files(smaps_text)
    return Released(advised, before, resident_kib(), tuple(name for _, name in not_owned),
                    sum(kib for kib, _ in not_owned), file_kib)
