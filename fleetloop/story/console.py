"""Live progress in the terminal: a rich status panel on a TTY, plain log lines otherwise (tests, CI, pipes).

Timeline events are printed as they happen; the status (devices online, predictions/s, labels, fleet drift,
rollout stage, versions served) is redrawn in place on a TTY, or logged every `plain_every_s` seconds.
The final summary table goes to stdout (`summary_table`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from fleetloop.story import words
from fleetloop.story.script import Status
from fleetloop.story.timeline import Event

__all__ = ["StoryConsole", "summary_table"]

log = logging.getLogger("fleetloop.story")


class StoryConsole:
    """Prints events and status; use as a context manager around the story. `refresh()` is cheap to call often."""

    def __init__(self, status: Callable[[], Status] | None = None, *, live: bool | None = None,
                 stream: TextIO | None = None, plain_every_s: float = 5.0, refresh_s: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.status = status
        self.plain_every_s, self.refresh_s = plain_every_s, refresh_s
        self.console = RichConsole(file=self.stream, highlight=False)
        self._live: Live | None = None
        self._handlers: list[logging.Handler] = []
        self._next_refresh = 0.0
        self._next_plain = time.monotonic() + plain_every_s

    def __enter__(self) -> StoryConsole:
        if self.live:
            root = logging.getLogger()
            self._handlers = list(root.handlers)
            for h in self._handlers:
                root.removeHandler(h)
            root.addHandler(RichHandler(console=self.console, show_path=False, markup=False))
            self._live = Live(self._panel(None), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
            root = logging.getLogger()
            for h in list(root.handlers):
                root.removeHandler(h)
            for h in self._handlers:
                root.addHandler(h)

    def event(self, e: Event) -> None:
        """A timeline event: one line, above the live panel on a TTY, on one clock (`stamp`)."""
        stamp, message = event_stamp(e, time.time())
        if self._live is not None:
            style = {"phase_start": "bold cyan", "story_failed": "bold red", "rollback": "bold yellow",
                     "rollout_refused": "yellow", "recovered": "bold green", "drift_detected": "bold magenta"}
            self.console.print(f"[dim]{stamp:>8}[/dim]  {message}", style=style.get(e.kind), markup=False,
                               highlight=False)
        else:
            log.info("%s  %s", stamp, message)

    def refresh(self) -> None:
        now = time.monotonic()
        if self.status is None or now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_s
        if self._live is not None:
            self._live.update(self._panel(self.status()))
        elif now >= self._next_plain:
            self._next_plain = now + self.plain_every_s
            log.info("%s", status_line(self.status()))

    def _panel(self, s: Status | None) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        if s is None:
            table.add_row("fleetloop demo", "starting…")
            return table
        table.add_row("phase", f"{s.phase}  (t+{s.elapsed_s:.0f} s)")
        table.add_row("devices online", f"{s.online}/{s.devices}")
        table.add_row("predictions/s", f"{s.predictions_per_s:,.0f}")
        table.add_row("labels", f"{s.labels:,}")
        table.add_row("fleet drift", s.drift)
        table.add_row("rollout", s.rollout)
        table.add_row("serving", versions_text(s.versions))
        return table


LATE_S = 1.0
"""An event told this much after it happened (a background retrain's gate, a job's start) says when it happened."""


def event_stamp(e: Event, now: float) -> tuple[str, str]:
    """(stamp, message) of a line printed at `now`. The set-up (until the agents start, when the story's clock
    starts) is ``setup``; after, the story's clock when the line is printed (so lines are in order on one clock),
    and an event told late says when it happened.

    >>> event_stamp(Event(at=100.0, t=9.9, kind="setup", message="mosquitto on …"), now=100.0)
    ('setup', 'mosquitto on …')
    >>> event_stamp(Event(at=163.5, t=63.5, kind="gate", message="v4: gate fail"), now=185.9)
    ('t+85.9s', 'v4: gate fail (at t+63.5 s)')
    """
    if e.kind == "setup":
        return "setup", e.message
    printed = max(e.t, now - (e.at - e.t))
    return f"t+{printed:.1f}s", e.message if printed - e.t <= LATE_S else f"{e.message} (at t+{e.t:.1f} s)"


def status_line(s: Status) -> str:
    return (f"t+{s.elapsed_s:4.0f}s  [{s.phase}]  online {s.online}/{s.devices}  predictions/s "
            f"{s.predictions_per_s:6.1f}  labels {s.labels}  drift {s.drift}  rollout {s.rollout}  "
            f"serving {versions_text(s.versions)}")


def versions_text(versions: Mapping[str, int]) -> str:
    return ", ".join(f"{v}×{n}" for v, n in sorted(versions.items())) or "-"


def summary_table(summary: Mapping[str, Any]) -> Table:
    """The final table: the six numbers that matter (`words.numbers`), then the versions, gates and the whole
    fleet's rates; the headline sentence (`words.headline`) goes above it."""

    def f(x: Any, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)

    table = Table(title="fleetloop demo: the story in numbers", title_justify="left", show_lines=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for what, value in words.numbers(summary):
        table.add_row(what, value)
    table.add_section()
    table.add_row("devices / cohorts", f"{summary['devices']} / {', '.join(summary['cohorts'])}")
    table.add_row("drift injected on", f"{summary['drift_site']} ({len(summary['drifted_devices'])} devices)")
    table.add_row("drifted features", ", ".join(summary["drift_features"][:4]) or "-")
    gate = summary.get("gate") or {}
    table.add_row("retrained candidate", f"{summary.get('candidate') or '-'}: gate {gate.get('verdict') or '-'}, "
                  f"{words.gate_line(gate)}")
    if summary.get("blocked_candidates"):
        table.add_row("blocked by the gate first", ", ".join(summary["blocked_candidates"]))
    table.add_row("promoted", f"{summary['promoted_version'] or '-'}")
    table.add_row("recall, whole fleet", f"{f(summary['recall_before'])} before the fix → "
                  f"{f(summary['recall_after'])} after (frozen v1 after: {f(summary.get('recall_frozen_after'))})")
    table.add_row("false alarms, whole fleet", f"{f(summary['far_before'], 4)} → {f(summary['far_after'], 4)} "
                  f"(frozen v1 after: {f(summary.get('far_frozen_after'), 4)})")
    bad = summary.get("bad_gate") or {}
    table.add_row("flipped-label candidate", f"{summary.get('bad_version') or '-'}: gate {bad.get('verdict') or '-'}, "
                  f"rollout {'refused' if summary['bad_candidate_rejected'] else 'NOT refused'}")
    table.add_row("NaN candidate", f"{summary.get('nan_version') or '-'}: "
                  f"{'rolled back in canary' if summary['canary_rolled_back'] else 'NOT rolled back'}")
    table.add_row("wall time", f"{f(summary['wall_s'], 1)} s")
    table.add_row("report", str(summary.get("report") or "-"))
    return table
