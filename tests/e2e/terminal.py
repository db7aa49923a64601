"""`fleetloop dev up` driven as a person drives it: a process in a terminal of its own, and what runs on its state
directory (shared by the ``dev up`` tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


def dev(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetloop.cli", "dev", *args]


def processes_under(root: Path) -> list[str]:
    """Command lines of live processes that name `root` (the broker, hub and agents of that fleet)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root) in cmdline and state != "Z":
            found.append(f"{pid}: {cmdline}")
    return found


class Terminal:
    """`fleetloop dev up` in a process group of its own, as a shell runs a foreground job; its output in a file."""

    def __init__(self, root: Path, *args: str) -> None:
        self.out = root.parent / "dev-up.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(dev("up", "--dir", str(root), *args), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, process_group=0)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (match := re.search(pattern, self.text(), re.MULTILINE)) is None:
            assert self.proc.poll() is None, f"dev up exited {self.proc.returncode}:\n{self.text()[-4000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} after {timeout:.0f} s:\n{self.text()[-4000:]}"
            time.sleep(0.2)
        return match

    def ctrl_c(self, timeout: float = 90.0) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what the terminal sends its foreground job
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
