"""A cgroup's OOM killer, emulated: when a process tree's resident memory passes a limit, SIGKILL its largest.

The field finding was a 300 MB cgroup whose kernel OOM killer took the agent down during a model's warm-up;
tests cannot rely on cgroups, so this watches ``/proc`` instead (Linux) and kills the same way the kernel would:
the biggest process of the group, without warning.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


class OomKiller:
    """Watch the tree of `pid()` every few ms; over `limit_mb` in total, SIGKILL its largest process."""

    def __init__(self, pid: Callable[[], int | None], limit_mb: float, every_s: float = 0.005) -> None:
        self.pid = pid
        self.limit_kb = int(limit_mb * 1024)
        self.every_s = every_s
        self.kills: list[tuple[int, int]] = []  # (pid, rss KiB) of what it killed; pid == root: the agent itself
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oom-killer", daemon=True)

    def __enter__(self) -> OomKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            root = self.pid()
            if root is None:
                continue
            sizes = {p: _rss_kb(p) for p in process_tree(root)}
            if sum(sizes.values()) > self.limit_kb:
                victim = max(sizes, key=lambda p: sizes[p])
                try:
                    os.kill(victim, signal.SIGKILL)
                    self.kills.append((victim, sizes[victim]))
                except ProcessLookupError:
                    pass
