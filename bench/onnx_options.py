"""onnxruntime session options on one core: memory and latency of the agent's choice against the alternatives.

Each option set runs in a fresh child process pinned to one CPU, on the model ``bench/agent.py`` trains (or
``--model DIR``, a version directory). A child loads a session, scores ``--runs`` single windows and reports:
the resident memory the first session added, what each further session (a shadow, a candidate on trial) adds,
what a one-off batch of 4,096 rows leaves behind (the memory arena keeps it), the load time and p50/p99 per
window. ``agent`` is `agent.models.onnx.session_options()`; ``default`` is onnxruntime's defaults with the
agent's one thread.

    .venv/bin/python bench/onnx_options.py [--model DIR] [--runs N] [--repeat N] [--cpu C] [--json]

With ``--json`` the last line is one JSON object: per option set, the median of ``--repeat`` children.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

# name -> option overrides on top of one intra/inter-op thread ("agent": the agent's own options)
OPTION_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_arena": {"enable_cpu_mem_arena": False},
    "no_arena_no_pattern": {"enable_cpu_mem_arena": False, "enable_mem_pattern": False},
    "opt_disable_all": {"enable_cpu_mem_arena": False, "enable_mem_pattern": False,
                        "graph_optimization_level": "ORT_DISABLE_ALL"},
    "opt_extended": {"enable_cpu_mem_arena": False, "enable_mem_pattern": False,
                     "graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    "agent": {},
}
EXTRA_SESSIONS = 4
BIG_BATCH = 4096


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """Load sessions with one option set and measure them."""
    import time

    os.sched_setaffinity(0, {job["cpu"]})
    import numpy as np
    import onnxruntime as ort

    from agent.models.onnx import session_options

    def options() -> ort.SessionOptions:
        if job["name"] == "agent":
            return session_options()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        for key, value in job["options"].items():
            setattr(opts, key, getattr(ort.GraphOptimizationLevel, value) if key == "graph_optimization_level"
                    else value)
        return opts

    onnx_bytes = (Path(job["model_dir"]) / "model.onnx").read_bytes()
    rng = np.random.default_rng(0)
    base = _rss_mb()
    started = time.perf_counter()
    session = ort.InferenceSession(onnx_bytes, options(), providers=["CPUExecutionProvider"])
    name, width = session.get_inputs()[0].name, session.get_inputs()[0].shape[-1]
    outputs = [session.get_outputs()[-1].name]
    session.run(outputs, {name: np.zeros((1, width), np.float32)})
    load_s = time.perf_counter() - started
    first_mb = _rss_mb() - base
    X = rng.normal(size=(job["runs"], width)).astype(np.float32)
    for i in range(min(1000, job["runs"])):
        session.run(outputs, {name: X[i : i + 1]})
    latency = np.empty(job["runs"], dtype=np.int64)
    for i in range(job["runs"]):
        t = time.perf_counter_ns()
        session.run(outputs, {name: X[i : i + 1]})
        latency[i] = time.perf_counter_ns() - t
    before_extra = _rss_mb()
    extra = [ort.InferenceSession(onnx_bytes, options(), providers=["CPUExecutionProvider"])
             for _ in range(EXTRA_SESSIONS)]
    for s in extra:
        s.run(outputs, {name: np.zeros((1, width), np.float32)})
    per_session = (_rss_mb() - before_extra) / EXTRA_SESSIONS
    before_big = _rss_mb()
    session.run(outputs, {name: rng.normal(size=(BIG_BATCH, width)).astype(np.float32)})
    for i in range(100):
        session.run(outputs, {name: X[i : i + 1]})
    after_big = _rss_mb() - before_big
    return {"load_ms": 1000 * load_s, "first_session_mb": first_mb, "per_extra_session_mb": per_session,
            "after_big_batch_mb": after_big, "p50_us": float(np.percentile(latency, 50)) / 1000,
            "p99_us": float(np.percentile(latency, 99)) / 1000, "mean_us": float(latency.mean()) / 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/onnx_options.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", type=Path, help="a model version directory (default: train bench/agent.py's)")
    parser.add_argument("--runs", type=int, default=20_000, help="single-window runs timed per child")
    parser.add_argument("--repeat", type=int, default=3, help="children per option set (medians reported)")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        sys.stdout.write(json.dumps(run_child(json.loads(args.child.read_text()))) + "\n")
        return 0
    if args.runs < 100 or args.repeat < 1:
        parser.error("--runs must be >= 100 and --repeat >= 1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="fleetloop-onnx-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            job = workdir / "prepare.json"
            job.write_text(json.dumps({"workdir": str(workdir), "seed": 7, "readings": 100}))
            out = subprocess.run([sys.executable, str(HERE / "agent.py"), "--prepare", str(job)], env=env,
                                 capture_output=True, text=True, check=True)
            model_dir = Path(json.loads(out.stdout.strip().splitlines()[-1])["model_dir"])
        results: dict[str, dict[str, float]] = {}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in OPTION_SETS}
        for _ in range(args.repeat):  # interleaved, so a burst of load elsewhere hits every set alike
            for name, options in OPTION_SETS.items():
                job = workdir / f"{name}.json"
                job.write_text(json.dumps({"name": name, "options": options, "model_dir": str(model_dir),
                                           "runs": args.runs, "cpu": args.cpu}))
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(job)], env=env,
                                     capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for name, rows in runs.items():
            results[name] = {key: round(statistics.median(r[key] for r in rows), 3) for key in rows[0]}
    lines = [f"onnxruntime session options, one core (CPU {args.cpu}), model {model_dir.name}, "
             f"medians of {args.repeat} children",
             "",
             f"{'options':<22}{'load ms':>9}{'1st MB':>8}{'+session MB':>13}{'big batch MB':>14}{'p50 us':>8}"
             f"{'p99 us':>8}"]
    for name, r in results.items():
        lines.append(f"{name:<22}{r['load_ms']:>9.1f}{r['first_session_mb']:>8.1f}{r['per_extra_session_mb']:>13.2f}"
                     f"{r['after_big_batch_mb']:>14.2f}{r['p50_us']:>8.2f}{r['p99_us']:>8.2f}")
    lines += ["",
              "1st MB        VmRSS the first session added (library initialisation included), loaded and warmed up",
              "+session MB   VmRSS each further session adds (a shadow model, a candidate on trial)",
              f"big batch MB  VmRSS left after one {BIG_BATCH}-row batch and 100 single windows (the arena keeps it)",
              "agent         agent.models.onnx.session_options(): no arena, no memory pattern, basic graph",
              "              optimisations, one non-spinning thread"]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
