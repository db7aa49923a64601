"""A trial run of a new model in a child process, so an out-of-memory or a crash cannot take the agent down.

A validly signed model can still allocate gigabytes per inference: loaded in the serving process, the kernel's
OOM killer takes the whole agent with it, and the retained assignment brings the same model back after every
restart. So before a candidate is loaded where it would serve, ``python -m agent.models.trial DIR`` loads it
with onnxruntime under an address-space limit (``RLIMIT_AS``: the child's size after its imports plus
`TrialLimits.memory_mb`), runs the warm-up and a few inferences, and prints one JSON line: ``ok`` and the peak
RSS growth. A child that fails, dies (a signal: the OOM killer), takes too long or grows beyond the budget is a
`ModelLoadError`: the version is refused for good and the incumbent keeps serving.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ModelLoadError

log = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass(frozen=True)
class TrialLimits:
    """How much a candidate may use in its trial: address space beyond the bare interpreter, and time."""

    memory_mb: float = 512.0
    timeout_s: float = 120.0
    runs: int = 5


def current_rss_mb() -> float:
    """This process's resident set now (Linux /proc; elsewhere the peak, which only overstates growth)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize() / MB
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peak_rss_mb() -> float:
    """The peak resident set of this process image (VmHWM; ru_maxrss would carry the parent's peak over exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _vm_size_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def run_trial(version_dir: Path, limits: TrialLimits) -> float:
    """Try `version_dir` in a memory-limited child; the peak RSS growth in MB, or ModelLoadError (refuse it)."""
    cmd = [sys.executable, "-m", "agent.models.trial", str(version_dir), "--memory-mb", str(limits.memory_mb),
           "--runs", str(limits.runs)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limits.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"trial: load and warm-up took longer than {limits.timeout_s:.0f} s") from None
    if out.returncode < 0:
        raise ModelLoadError(f"trial: the model killed its process (signal {-out.returncode}; out of memory?)")
    lines = out.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except ValueError:
        report = {}
    if out.returncode != 0 or not report.get("ok"):
        reason = report.get("error") or (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelLoadError(f"trial (memory limit {limits.memory_mb:.0f} MB): {reason}"[:1500])
    growth = float(report["rss_growth_mb"])
    if growth > limits.memory_mb:
        raise ModelLoadError(f"trial: grew by {growth:.0f} MB, over the {limits.memory_mb:.0f} MB budget")
    log.info("trial of %s: ok, peak RSS growth %.1f MB", version_dir.name, growth)
    return growth


def _child(version_dir: Path, memory_mb: float, runs: int) -> dict[str, object]:
    import numpy as np

    from agent.models.onnx import OnnxModel
    from infra.versions import read_version

    manifest, onnx_bytes = read_version(version_dir)  # the parent verified it; the child only runs it
    base_rss = current_rss_mb()
    limit = _vm_size_bytes() + int(memory_mb * MB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        model = OnnxModel(manifest, onnx_bytes)  # loads and warms up
        rng = np.random.default_rng(0)
        for _ in range(runs):
            model.score(rng.normal(size=(1, model.n_features)).astype(np.float32))
    except MemoryError:
        return {"ok": False, "error": "out of memory (MemoryError)"}
    except Exception as exc:  # onnxruntime's allocation failures and other errors are untyped
        text = f"{type(exc).__name__}: {exc}"
        if "bad_alloc" in text or "allocate" in text:  # std::bad_alloc without the arena, the arena's own message
            text = f"out of memory: the model could not allocate within the limit ({text})"
        return {"ok": False, "error": text[:1000]}
    return {"ok": True, "rss_growth_mb": max(0.0, _peak_rss_mb() - base_rss)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agent.models.trial", description=__doc__)
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--memory-mb", type=float, default=TrialLimits.memory_mb)
    parser.add_argument("--runs", type=int, default=TrialLimits.runs)
    args = parser.parse_args(argv)
    try:
        report = _child(args.version_dir, args.memory_mb, args.runs)
    except Exception as exc:  # e.g. an unreadable version directory: reported, never a traceback
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:1000]}
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
