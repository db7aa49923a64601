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
        """A timeline event: one line, above the live panel on a TTY."""
        if self._live is not None:
            style = {"phase_start": "bold cyan", "story_failed": "bold red", "rollback": "bold yellow",
                     "rollout_refused": "yellow", "recovered": "bold green", "drift_detected": "bold magenta"}
            self.console.print(f"[dim]t+{e.t:6.1f}s[/dim]  {e.message}", style=style.get(e.kind), markup=True,
                               highlight=False)
        else:
            log.info("t+%.1fs  %s", e.t, e.message)

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


def status_line(s: Status) -> str:
    return (f"t+{s.elapsed_s:4.0f}s  [{s.phase}]  online {s.online}/{s.devices}  predictions/s "
            f"{s.predictions_per_s:6.1f}  labels {s.labels}  drift {s.drift}  rollout {s.rollout}  "
            f"serving {versions_text(s.versions)}")


def versions_text(versions: Mapping[str, int]) -> str:
    return ", ".join(f"{v}×{n}" for v, n in sorted(versions.items())) or "-"


def summary_table(summary: Mapping[str, Any]) -> Table:
    """The final table: versions, gate numbers, recall/false alarms before and after, drift → recovered."""

    def f(x: Any, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)

    table = Table(title="fleetloop demo: the story in numbers", title_justify="left", show_lines=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("devices / cohorts", f"{summary['devices']} / {', '.join(summary['cohorts'])}")
    table.add_row("drift injected on", f"{summary['drift_site']} ({len(summary['drifted_devices'])} devices)")
    table.add_row("drift detected", f"after {f(summary['drift_detected_after_s'], 1)} s: "
                  f"{', '.join(summary['drift_features'][:4]) or '-'}" if summary["drift_detected"] else "no")
    gate = summary.get("gate") or {}
    table.add_row("retrained candidate", f"{summary.get('candidate') or '-'}: gate {gate.get('verdict') or '-'} "
                  f"(recall {f(gate.get('candidate_recall'))} vs {f(gate.get('incumbent_recall'))}, FAR "
                  f"{f(gate.get('candidate_far'))} vs {f(gate.get('incumbent_far'))}, "
                  f"{gate.get('n_pos', '-')}+/{gate.get('n_neg', '-')}-)")
    if summary.get("blocked_candidates"):
        table.add_row("blocked by the gate first", ", ".join(summary["blocked_candidates"]))
    table.add_row("promoted", f"{summary['promoted_version'] or '-'}")
    table.add_row("drift → recovered fleet", f"{f(summary['drift_to_recovered_s'], 1)} s")
    table.add_row("recall before → after the fix", f"{f(summary['recall_before'])} → {f(summary['recall_after'])} "
                  f"(frozen v1 after: {f(summary.get('recall_frozen_after'))})")
    table.add_row("false alarms before → after", f"{f(summary['far_before'], 4)} → {f(summary['far_after'], 4)} "
                  f"(frozen v1 after: {f(summary.get('far_frozen_after'), 4)})")
    bad = summary.get("bad_gate") or {}
    table.add_row("flipped-label candidate", f"{summary.get('bad_version') or '-'}: gate {bad.get('verdict') or '-'}, "
                  f"rollout {'refused' if summary['bad_candidate_rejected'] else 'NOT refused'}")
    table.add_row("NaN candidate", f"{summary.get('nan_version') or '-'}: "
                  f"{'rolled back in canary' if summary['canary_rolled_back'] else 'NOT rolled back'}")
    table.add_row("wall time", f"{f(summary['wall_s'], 1)} s")
    table.add_row("report", str(summary.get("report") or "-"))
    return table
