"""Agent hot-path benchmark: windows/s, per-window latency and peak RSS of the real pipeline on one core.

The parent trains a model with the project's recipe code (sim + models), writes a version directory,
pickles the estimator and simulates the readings; then each pipeline runs in a fresh child process
(``bench/agent.py --child JOB``) pinned to one CPU, so the onnxruntime child never imports scikit-learn
and its peak RSS is its own. Each child builds the agent with ``build_agent(settings, ArraySource, connect=False)``
(real SQLite file in WAL mode, no MQTT) and drives it with ``Agent.run``: windowing, features, scoring,
the decision, pending SQLite rows and outbox messages, and the periodic ``commit()``.

Beside the hot path it measures what a gateway feels: ``start_s``, a fresh process's time from its start to
the first prediction (an agent restarting with its model installed, the source as fast as possible);
``run_rss_mb``, the resident memory of a real ``fleetloop agent run --dev`` with the sim source and default
settings after ``--run-seconds``; and ``install_mb``, the installed size of the distributions the agent
install (``fleetloop[agent]``) pulls in, summed from their RECORD files.

    .venv/bin/python bench/agent.py [--windows N] [--json] [--seed S] [--cpu C] [--profile] [--repeat N]

With ``--json`` the last line of stdout is one JSON object (``windows_per_s``, ``p99_ms``, ``rss_mb``,
``start_s``, ``run_rss_mb``, ``install_mb``, ``install_slim_mb``, ``sklearn_windows_per_s``, ``speedup``, …).
Progress goes to stderr through logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this file's directory comes first on sys.path and this module would shadow the
# `agent` package: put the repository root there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

log = logging.getLogger("bench.agent")

# The model: the initial recipe's window (30 readings of every simulator sensor) with step 1, so every
# reading after the first 29 yields exactly one window; a smaller fleet than the recipe keeps training ~2 s.
WINDOW_SIZE, WINDOW_STEP = 30, 1
N_MACHINES, STEPS, HORIZON = 20, 2000, 100
DEFAULT_WINDOWS = 100_000
DEFAULT_SKLEARN_WINDOWS = 20_000
WARMUP_WINDOWS = 1_000
DEFAULT_BATCH = 256  # AgentSettings.commit_every's default: the most readings the agent scores in one go
TARGETS = {"windows_per_s": 60_000.0, "p99_ms": 0.1, "rss_mb": 100.0, "speedup": 10.0,
           "start_s": 0.5, "run_rss_mb": 64.0, "install_mb": 150.0}
DEFAULT_RUN_SECONDS = 60.0  # issue 12: "RSS of a running agent (sim source, default settings, after 60 s)"
# One core means one BLAS/OpenMP thread too; onnxruntime's own pools are set to 1 thread by OnnxModel.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
HEAVY = ("sklearn", "scipy", "skl2onnx", "fastapi")


# -- child: one pipeline, one process, one core ----------------------------------------------------
class SklearnScorer:
    """scikit-learn ``predict_proba`` behind OnnxModel's ``score(features)``: on the agent's batch, or (`rowwise`)
    one window a call, as the pipeline scored before it batched."""

    def __init__(self, estimator: Any, rowwise: bool = False) -> None:
        self._predict_proba = estimator.predict_proba
        self._rowwise = rowwise

    def score(self, features: Any) -> Any:
        if self._rowwise:
            import numpy as np

            return np.array([self._predict_proba(row[None])[0, 1] for row in features])
        return self._predict_proba(features)[:, 1]


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """Build the agent, warm it up, run `job["windows"]` windows through `Agent.run`, and measure."""
    os.sched_setaffinity(0, {job["cpu"]})
    import numpy as np

    from agent.app import build_agent
    from agent.settings import AgentSettings
    from agent.sources.memory import ArraySource

    values = np.load(job["readings"])
    settings = AgentSettings(device_id="bench-0", dev_mode=True, data_dir=Path(job["data_dir"]),
                             initial_model=Path(job["model_dir"]), commit_every=job["batch"])
    source = ArraySource(job["sensors"], values)
    if job.get("live"):  # a live source: one reading ready a loop turn, so one a process_batch() call
        many = source.read_many
        source.read_many = lambda max_n, timeout: many(1, timeout)  # type: ignore[method-assign]
    agent = build_agent(settings, source, connect=False)
    if job["scorer"] in ("sklearn", "sklearn-rows"):
        with open(job["estimator"], "rb") as fh:
            scorer = SklearnScorer(pickle.load(fh), rowwise=job["scorer"] == "sklearn-rows")
        agent.model.score = scorer.score  # type: ignore[method-assign]

    warmup, windows = job["warmup"], job["windows"]
    # one entry per window, preallocated: no per-window allocation. A window's latency is the process_batch() call
    # that scored it (its last reading was there when the call began); its cost is that call's time / its windows.
    latency_ns = np.zeros(warmup + windows, dtype=np.int64)
    thread_ns = np.zeros(warmup + windows, dtype=np.int64)  # the same calls on this thread's CPU clock
    cost_ns = np.zeros(warmup + windows, dtype=np.float64)
    calls: list[int] = []  # windows per call that produced any
    commit_ns: list[int] = []
    counters, process, commit, clock = agent.counters, agent.process_batch, agent.commit, time.perf_counter_ns
    thread_clock = time.thread_time_ns

    def timed_process(batch: Any) -> None:
        before = counters.windows
        started, cpu_started = clock(), thread_clock()
        process(batch)
        cpu = thread_clock() - cpu_started
        elapsed = clock() - started
        made = counters.windows - before
        if made:  # only calls that produced (scored) windows
            latency_ns[before : counters.windows] = elapsed
            thread_ns[before : counters.windows] = cpu
            cost_ns[before : counters.windows] = elapsed / made
            calls.append(made)

    def timed_commit() -> None:
        started = clock()
        commit()
        commit_ns.append(clock() - started)

    agent.process_batch = timed_process  # type: ignore[method-assign]
    agent.commit = timed_commit  # type: ignore[method-assign]

    agent.run(max_windows=warmup, drain_s=0.0)
    commit_ns.clear()
    calls.clear()
    before = (counters.windows, counters.commits, counters.anomalies, counters.samples)
    first = before[0]
    warm_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    profiler = None
    if job["profile"]:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    agent.run(max_windows=warmup + windows, drain_s=0.0)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    hwm_kib = _vm_hwm_kib()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(job["profile_out"])
    cpu_seconds = (usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    measured = counters.windows - first
    lat = latency_ns[first : counters.windows] / 1e6
    lat_cpu = thread_ns[first : counters.windows] / 1e6
    commits = np.asarray(commit_ns, dtype=np.float64) / 1e6
    agent.db.close()
    return {
        "scorer": job["scorer"],
        "windows": measured,
        "seconds": seconds,
        "windows_per_s": measured / seconds,
        # CPU time is what the agent itself used: it stays put when another process takes the core
        "cpu_windows_per_s": measured / cpu_seconds,
        "cpu_share": cpu_seconds / seconds,
        "preempted": usage.ru_nivcsw - usage_before.ru_nivcsw,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        # on the thread's CPU clock: time the core was taken away does not count (another process's cache use does)
        "cpu_p50_ms": float(np.percentile(lat_cpu, 50)),
        "cpu_p99_ms": float(np.percentile(lat_cpu, 99)),
        "process_ms_per_window": float(cost_ns[first : counters.windows].sum()) / 1e6 / measured,
        "windows_per_call": float(np.mean(calls)) if calls else 0.0,
        "commit_ms_per_window": float(commits.sum()) / measured,
        "commit_p99_ms": float(np.percentile(commits, 99)) if commits.size else 0.0,
        "commits": counters.commits - before[1],
        "anomalies": counters.anomalies - before[2],
        "samples": counters.samples - before[3],
        "inference_errors": counters.inference_errors,
        "rss_mb": usage.ru_maxrss / 1024.0,  # KiB on Linux
        "rss_warm_mb": warm_rss_kib / 1024.0,
        "hwm_mb": hwm_kib / 1024.0,
        "bench_buffers_mb": (values.nbytes + latency_ns.nbytes + thread_ns.nbytes + cost_ns.nbytes) / 2**20,
        "heavy_modules": sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY)),
        "cpu": job["cpu"],
    }


def run_start(job: dict[str, Any]) -> dict[str, Any]:
    """One agent start: settings as the CLI loads them, build (no broker), run until the first prediction."""
    from agent.app import build_agent
    from agent.settings import AgentSettings

    settings = AgentSettings.load(None, device_id="bench-start", dev_mode=True, data_dir=Path(job["data_dir"]),
                                  initial_model=Path(job["model_dir"]), source={"kind": "sim", "rate": 0.0})
    agent = build_agent(settings, connect=False)
    agent.run(max_windows=1, drain_s=0.0)
    first = time.time()
    windows = agent.counters.windows
    agent.db.close()
    return {"first_prediction_at": first, "windows": windows}


def _vm_hwm_kib() -> int:
    """Peak RSS of this process image from /proc (a cross-check of ru_maxrss; 0 where unavailable)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1])


# -- parent: model, readings, children, report ------------------------------------------------------
def prepare(workdir: Path, seed: int, n_readings: int) -> dict[str, Any]:
    """Train and write the benchmark model (recipe code), pickle its estimator, simulate the readings."""
    import numpy as np

    from models.onnx_export import onnx_scores, onnx_session, parity_check, to_onnx_bytes
    from models.reference import reference_from_features
    from models.training import classification_metrics, positive_scores, select_threshold, train_classifier
    from models.version import build_manifest, write_version
    from shared.features import WindowSpec
    from sim.dataset import default_fleet, simulate_windows, split_by_machine
    from sim.machine import SENSORS, SimulatedMachine

    started = time.perf_counter()
    spec = WindowSpec(sensors=list(SENSORS), size=WINDOW_SIZE, step=WINDOW_STEP)
    ds = simulate_windows(N_MACHINES, STEPS, seed, spec, HORIZON)
    train, val, hold = split_by_machine(ds, (0.6, 0.2, 0.2), seed=seed)
    estimator = train_classifier(train.X, train.y, seed=seed)
    threshold = select_threshold(val.y, positive_scores(estimator, val.X))
    onnx_bytes = to_onnx_bytes(estimator, spec.n_features)
    parity = parity_check(estimator, onnx_bytes, hold.X, threshold)  # raises ParityError on disagreement
    manifest = build_manifest(
        version="bench", onnx_bytes=onnx_bytes, family="gbc", window=spec, threshold=threshold,
        reference=reference_from_features(train.X, onnx_scores(onnx_session(onnx_bytes), train.X)),
        X=train.X, y=train.y, seed=seed, data_kind="simulated", created_by="bench/agent.py",
        reason="benchmark model", metrics=classification_metrics(hold.y, positive_scores(estimator, hold.X), threshold),
    )
    model_dir = write_version(workdir / "model", onnx_bytes, manifest)
    estimator_path = workdir / "estimator.pkl"
    estimator_path.write_bytes(pickle.dumps(estimator))
    machine = SimulatedMachine("bench-live", seed + 1, default_fleet()[0])  # not one of the training machines
    readings = workdir / "readings.npy"
    np.save(readings, machine.run(n_readings).values)
    log.info("trained on %d windows, parity max |diff| %.1e, threshold %.3f, in %.1fs",
             len(train), parity.max_abs_diff, threshold, time.perf_counter() - started)
    return {"model_dir": str(model_dir), "estimator": str(estimator_path), "readings": str(readings),
            "sensors": list(SENSORS)}


def spawn(mode: str, job_path: Path, job: dict[str, Any]) -> dict[str, Any]:
    """Run `job` in a fresh ``--prepare`` or ``--child`` process and return the JSON it prints last."""
    job_path.write_text(json.dumps(job))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), mode, str(job_path)],
                         capture_output=True, text=True, env={**os.environ, **CHILD_ENV}, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} {job_path.stem} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    sys.stderr.write(out.stderr)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_start(workdir: Path, base: dict[str, Any], repeat: int) -> float:
    """Median seconds from spawning a fresh agent process to its first prediction (a restart: the model is
    already installed by a first, untimed start)."""
    job = {**base, "data_dir": str(workdir / "db-start")}
    spawn("--start", workdir / "start.json", job)  # first start: creates the database, installs the model
    times = []
    for _ in range(repeat):
        started = time.time()
        result = spawn("--start", workdir / "start.json", job)
        times.append(result["first_prediction_at"] - started)
    log.info("start to first prediction: %s s", ", ".join(f"{t:.3f}" for t in times))
    return statistics.median(times)


def measure_running_rss(workdir: Path, model_dir: str, seconds: float, repeat: int) -> dict[str, float]:
    """Median resident memory (MiB) of `fleetloop agent run --dev` (sim source, default settings) after `seconds`:
    ``VmRSS`` and its parts ``RssAnon`` (the process's own memory) and ``RssFile`` (pages of its libraries and
    files, which the kernel can drop and re-read). The broker port is a closed local one: the agent scores and
    queues as when its link is down."""
    rss: dict[str, list[float]] = {"VmRSS": [], "RssAnon": [], "RssFile": []}
    for i in range(repeat):
        with socket.socket() as s:  # a free port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-c", "from fleetloop.cli import main; raise SystemExit(main())", "agent", "run",
               "--dev", "--device-id", f"bench-run-{i}", "--data-dir", str(workdir / f"db-run-{i}"),
               "--initial-model", model_dir, "--mqtt-port", str(port)]
        log_path = workdir / f"run-{i}.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, env={**os.environ, **CHILD_ENV})
        try:
            time.sleep(seconds)
            if proc.poll() is not None:
                raise SystemExit(f"agent run exited early ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
            status = dict(x.split(":", 1) for x in Path(f"/proc/{proc.pid}/status").read_text().splitlines())
            for key, values in rss.items():
                values.append(int(status[key].split()[0]) / 1024.0)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    log.info("running agent RSS after %.0f s: %s MiB", seconds, ", ".join(f"{r:.1f}" for r in rss["VmRSS"]))
    return {key: statistics.median(values) for key, values in rss.items()}


def install_size_mb(extra: str = "agent") -> tuple[float, float, list[str]]:
    """Installed bytes (MiB) of the distributions ``fleetloop[extra]`` needs: the requirements of this checkout's
    pyproject.toml, their closure walked through the installed metadata, each distribution's RECORD summed once
    for two sizes: as pip installed them (files a slim removed included) and the files there now; and their names."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    todo = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"][extra]]]
    seen: dict[str, tuple[int, int]] = {}
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key == own:  # fleetloop[agent] inside another extra
            todo += [Requirement(r) for e in req.extras for r in project["optional-dependencies"][e]]
            continue
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = _dist_bytes(dist)
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in req.extras | {""}):
                todo.append(dep)
    return sum(i for i, _ in seen.values()) / 2**20, sum(p for _, p in seen.values()) / 2**20, sorted(seen)


def slim_saving_mb() -> float:
    """MiB that ``fleetloop agent slim`` would remove from this interpreter's agent install (0 once slimmed)."""
    from agent.slim import plan

    return sum(r.size for r in plan()) / 2**20


def wheel_install_mb(dists: list[str], platform_tag: str,
                     python: str = platform.python_version()) -> tuple[float, float]:
    """Installed bytes (MiB) of `dists` on another platform (e.g. a Raspberry Pi's ``manylinux_2_28_aarch64``):
    the versions installed here, as that platform's wheels (pip download from the configured index, no install),
    each wheel's uncompressed files summed (what its RECORD lists); and the same after ``fleetloop agent slim``
    (`agent.slim.removable` applied to each wheel's files). Raises SystemExit with pip's words if the index cannot
    serve them."""
    pins = [f"{d}=={metadata.version(d)}" for d in dists]
    # the older manylinux tags too: some of the agent's wheels are built for them only
    tags = [platform_tag] + (["manylinux_2_17_aarch64", "manylinux2014_aarch64"] if "aarch64" in platform_tag else [])
    with tempfile.TemporaryDirectory(prefix="fleetloop-wheels-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "-d", tmp, *pins]
        for tag in tags:
            cmd[4:4] = ["--platform", tag]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"pip could not download {platform_tag} wheels:\n{out.stderr[-2000:]}")
        total = slimmed = 0
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                total += sum(info.file_size for info in zf.infolist())
                slimmed += _slimmed_wheel_bytes(wheel.name.split("-")[0].lower(), zf)
    return total / 2**20, slimmed / 2**20


def _slimmed_wheel_bytes(dist: str, zf: zipfile.ZipFile) -> int:
    """A wheel's installed bytes after `agent.slim` (its C-API check read from the wheel's own module)."""
    from functools import partial
    from pathlib import PurePosixPath

    from agent.slim import capi_removable, removable

    infos = zf.infolist()
    capi_goes = capi_removable((PurePosixPath(i.filename).name, partial(zf.read, i)) for i in infos)
    return sum(i.file_size for i in infos
               if (why := removable(dist, PurePosixPath(i.filename))) is None or ("C-API" in why and not capi_goes))


def _dist_bytes(dist: metadata.Distribution) -> tuple[int, int]:
    """Bytes of `dist` as pip installed it (its files there now and those `fleetloop agent slim` removed, whose
    sizes its list records), and of its files there now."""
    from agent.slim import removed_files

    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total + sum(size for _, size in removed_files(dist)), total


def measure(workdir: Path, name: str, base: dict[str, Any], **job: Any) -> dict[str, Any]:
    """One pipeline in its own child process, its own database."""
    job = {**base, "data_dir": str(workdir / f"db-{name}"), "profile_out": str(workdir / f"{name}.prof"), **job}
    result = spawn("--child", workdir / f"{name}.json", job)
    log.info("%s: %.0f windows/s", name, result["windows_per_s"])
    return result


def report(onnx: dict[str, Any], skl: dict[str, Any], rows: dict[str, Any], cpu: int, n_sensors: int,
           gateway: dict[str, Any], batch: int, live: bool = False,
           live_onnx: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The human table and the JSON summary (headline numbers are the onnxruntime pipeline's). `live_onnx` is the
    onnxruntime pipeline fed one reading a call (a batched run's companion): its p99 is a window's latency."""
    latency = live_onnx or onnx  # a window's own latency: one reading a call (batched, it waits for its batch)
    speedup = onnx["windows_per_s"] / skl["windows_per_s"]
    summary: dict[str, Any] = {
        "windows_per_s": round(onnx["windows_per_s"], 1),
        "cpu_windows_per_s": round(onnx["cpu_windows_per_s"], 1),
        "cpu_share": round(onnx["cpu_share"], 3),
        "p50_ms": round(onnx["p50_ms"], 4),
        "p99_ms": round(onnx["p99_ms"], 4),
        "max_ms": round(onnx["max_ms"], 3),
        "commit_ms_per_window": round(onnx["commit_ms_per_window"], 5),
        "commit_p99_ms": round(onnx["commit_p99_ms"], 3),
        "rss_mb": round(onnx["rss_mb"], 1),
        "bench_buffers_mb": round(onnx["bench_buffers_mb"], 1),
        "sklearn_windows_per_s": round(skl["windows_per_s"], 1),
        "sklearn_cpu_windows_per_s": round(skl["cpu_windows_per_s"], 1),
        "sklearn_p50_ms": round(skl["p50_ms"], 4),
        "sklearn_p99_ms": round(skl["p99_ms"], 4),
        "sklearn_rss_mb": round(skl["rss_mb"], 1),
        "sklearn_rowwise_windows_per_s": round(rows["windows_per_s"], 1),
        "sklearn_rowwise_cpu_windows_per_s": round(rows["cpu_windows_per_s"], 1),
        "speedup": round(speedup, 2),
        "speedup_vs_rowwise": round(onnx["windows_per_s"] / rows["windows_per_s"], 2),
        "cpu_speedup_vs_rowwise": round(onnx["cpu_windows_per_s"] / rows["cpu_windows_per_s"], 2),
        "batch": batch,
        "live": live,
        "windows_per_call": round(onnx["windows_per_call"], 1),
        "process_ms_per_window": round(onnx["process_ms_per_window"], 5),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_speedup": round(onnx["cpu_windows_per_s"] / skl["cpu_windows_per_s"], 2),
        "windows": onnx["windows"],
        "sklearn_windows": skl["windows"],
        "window_step": WINDOW_STEP,
        "anomaly_rate": round(onnx["anomalies"] / onnx["windows"], 4),
        "sample_rate": round(onnx["samples"] / onnx["windows"], 4),
        "inference_errors": onnx["inference_errors"] + skl["inference_errors"] + rows["inference_errors"],
        "onnx_child_imports": onnx["heavy_modules"],
        "start_s": round(gateway["start_s"], 3),
        "run_rss_mb": round(gateway["run_rss_mb"], 1),
        "run_rss_anon_mb": round(gateway["run_rss_anon_mb"], 1),
        "run_rss_file_mb": round(gateway["run_rss_file_mb"], 1),
        "run_seconds": gateway["run_seconds"],
        "install_mb": round(gateway["install_mb"], 1),
        "install_slim_mb": round(gateway["install_slim_mb"], 1),
        "install_platform": gateway["install_platform"],
        "install_platform_mb": (None if gateway["install_platform_mb"] is None
                                else round(gateway["install_platform_mb"], 1)),
        "install_platform_slim_mb": (None if gateway["install_platform_slim_mb"] is None
                                     else round(gateway["install_platform_slim_mb"], 1)),
        "install_distributions": gateway["install_distributions"],
        "cpu": cpu,
    }
    if live_onnx is not None:
        summary.update({"live_windows_per_s": round(live_onnx["windows_per_s"], 1),
                        "live_p50_ms": round(live_onnx["p50_ms"], 4), "live_p99_ms": round(live_onnx["p99_ms"], 4),
                        "live_max_ms": round(live_onnx["max_ms"], 3),
                        "live_cpu_p50_ms": round(live_onnx["cpu_p50_ms"], 4),
                        "live_cpu_p99_ms": round(live_onnx["cpu_p99_ms"], 4)})
    met = {
        "windows_per_s": onnx["windows_per_s"] >= TARGETS["windows_per_s"],
        "p99_ms": latency["p99_ms"] <= TARGETS["p99_ms"],
        "rss_mb": onnx["rss_mb"] - onnx["bench_buffers_mb"] <= TARGETS["rss_mb"],  # the agent's own peak
        "speedup": speedup >= TARGETS["speedup"],
        "speedup_vs_rowwise": summary["speedup_vs_rowwise"] >= TARGETS["speedup"],
        "start_s": gateway["start_s"] <= TARGETS["start_s"],
        "run_rss_mb": gateway["run_rss_mb"] <= TARGETS["run_rss_mb"],
        "install_mb": gateway["install_mb"] <= TARGETS["install_mb"],
        "install_slim_mb": gateway["install_slim_mb"] <= TARGETS["install_mb"],
        "install_platform_mb": gateway["install_platform_mb"] is not None
        and gateway["install_platform_mb"] <= TARGETS["install_mb"],
        "install_platform_slim_mb": gateway["install_platform_slim_mb"] is not None
        and gateway["install_platform_slim_mb"] <= TARGETS["install_mb"],
    }
    summary["targets_met"] = met
    lines = [
        f"fleetloop agent benchmark: Python {platform.python_version()}, "
        f"onnxruntime {metadata.version('onnxruntime')}, scikit-learn {metadata.version('scikit-learn')}, "
        f"one core (CPU {cpu})",
        f"window {WINDOW_SIZE} readings x {n_sensors} sensors, step {WINDOW_STEP}: one window per reading, "
        "so windows/s = readings/s",
        (f"--live: one reading a process_batch() call (a live source), commit_every {batch}"
         if live else f"readings scored together: up to {batch} (commit_every)")
        + f", {onnx['windows_per_call']:.0f} windows a process_batch() call on average; "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        f"{'pipeline':<18}{'windows/s':>10}{'CPU w/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'commit ms/win':>14}"
        f"{'commit p99 ms':>14}{'RSS MB':>8}{'windows':>9}",
    ]
    runs = [("onnxruntime", onnx), ("scikit-learn", skl), ("scikit-learn 1/call", rows)]
    if live_onnx is not None:
        runs.insert(1, ("onnxruntime live", live_onnx))
    for name, r in runs:
        lines.append(
            f"{name:<18}{r['windows_per_s']:>10,.0f}{r['cpu_windows_per_s']:>9,.0f}{r['p50_ms']:>8.3f}"
            f"{r['p99_ms']:>8.3f}{r['commit_ms_per_window']:>14.4f}{r['commit_p99_ms']:>14.2f}{r['rss_mb']:>8.1f}"
            f"{r['windows']:>9,}"
        )
    verdict = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"speed-up onnxruntime / scikit-learn: {speedup:.1f}x (windows/s; {summary['cpu_speedup']:.1f}x on CPU time) "
        "in the same batched pipeline;",
        f"  {summary['speedup_vs_rowwise']:.1f}x ({summary['cpu_speedup_vs_rowwise']:.1f}x on CPU time) over "
        "scikit-learn scoring one window a call (how the pipeline scored before it batched)",
        f"targets: >= {TARGETS['windows_per_s']:,.0f} windows/s {verdict[met['windows_per_s']]}; "
        f"p99 <= {TARGETS['p99_ms']:g} ms{' (live)' if live_onnx else ''} {verdict[met['p99_ms']]}; "
        f"peak RSS <= {TARGETS['rss_mb']:.0f} MB without the bench's buffers "
        f"{verdict[met['rss_mb']]} (the running agent's is below); >= {TARGETS['speedup']:.0f}x scikit-learn: "
        f"{verdict[met['speedup_vs_rowwise']]} "
        f"against one window a call (the pipeline when the issue was filed), {verdict[met['speedup']]} in the same "
        "batched pipeline",
        "",
        f"{'gateway':<13}{'start s':>10}{'run RSS MB':>12}{'install MB':>12}{'slimmed MB':>12}",
        f"{'agent':<13}{gateway['start_s']:>10.3f}{gateway['run_rss_mb']:>12.1f}{gateway['install_mb']:>12.1f}"
        f"{gateway['install_slim_mb']:>12.1f}",
        f"targets: start <= {TARGETS['start_s']:g} s {verdict[met['start_s']]}; running RSS <= "
        f"{TARGETS['run_rss_mb']:.0f} MB {verdict[met['run_rss_mb']]}; install <= {TARGETS['install_mb']:.0f} MB "
        f"here ({platform.machine()}): as pip installs it {verdict[met['install_mb']]}, slimmed (`fleetloop agent "
        f"slim`, as the agent image is) {verdict[met['install_slim_mb']]}"
        + ("" if gateway["install_platform_mb"] is None else
           f"; on {gateway['install_platform']}: {verdict[met['install_platform_mb']]} "
           f"({gateway['install_platform_mb']:.1f} MB of its wheels), slimmed "
           f"{verdict[met['install_platform_slim_mb']]} ({gateway['install_platform_slim_mb']:.1f} MB)"),
        "",
        "windows/s  measured windows / wall time of Agent.run(): read, process, commit, housekeeping (no MQTT);",
        "           build, model load and 1,000 warm-up windows are not timed",
        f"CPU w/s    windows / CPU seconds of the child; the onnxruntime child was on the CPU "
        f"{100 * onnx['cpu_share']:.0f}% of the wall time",
        f"           ({onnx['preempted']:,} involuntary switches): well below 100% means something else used the core",
        "p50/p99    a window's latency: the process_batch() call that scored it (its readings were all there when",
        "           the call began): windowing, features, scoring, decisions, pending rows and queued outbox messages",
        f"           ({100 * summary['anomaly_rate']:.1f}% anomalies, {100 * summary['sample_rate']:.1f}% samples); "
        "no SQLite: the commit builds and encodes the messages.",
        f"           Per window that is {1000 * onnx['process_ms_per_window']:.1f} us; a smaller --batch trades "
        "throughput for latency" + ("; `onnxruntime live` is fed one reading a call, as a live source feeds it, "
                                    "so its p99 is a window's own latency (the p99 target's)" if live_onnx else ""),
        *([f"           live on the thread's CPU clock (the core taken away does not count): p50 "
           f"{live_onnx['cpu_p50_ms']:.3f} ms, p99 {live_onnx['cpu_p99_ms']:.3f} ms"] if live_onnx else []),
        "commit     all commit() time / windows, and p99 of commit() calls (one transaction per <= 256 windows;",
        "           WAL auto-checkpoints with their fsync happen inside some commits)",
        f"RSS        ru_maxrss of each child (MiB), including {onnx['bench_buffers_mb']:.1f} MiB of benchmark buffers "
        "(readings, latencies);",
        f"           the onnxruntime child imported {', '.join(onnx['heavy_modules']) or 'no scikit-learn or scipy'}",
        "start s    median over restarts of a fresh process: interpreter, imports, settings, database, model load",
        "           and warm-up, to the first prediction (sim source as fast as possible, model already installed)",
        f"run RSS    VmRSS of `fleetloop agent run --dev` (sim source, default settings) after "
        f"{gateway['run_seconds']:g} s (MiB): {gateway['run_rss_anon_mb']:.1f} anonymous, "
        f"{gateway['run_rss_file_mb']:.1f} library and file pages",
        f"           run as uid {os.geteuid()}: the agent hands back its loading-only library pages only if it owns "
        "the files (or is root);",
        "           as a user that does not own its install it keeps them (~25 MiB more: agent/memory.py, README)",
        f"install    installed size of the {len(gateway['install_distributions'])} distributions fleetloop[agent] "
        "needs (RECORD files;",
        "           the project itself and Python excluded); slimmed: without what `fleetloop agent slim` removes",
        "           (onnxruntime's C-API library and model tooling, numpy's tests: see agent/slim.py)",
    ]
    return "\n".join(lines) + "\n", summary


def print_profile(path: str, windows: int, top: int = 25) -> None:
    """Where the profiled child spent its time: the top functions by own time, per window."""
    import pstats

    stats = pstats.Stats(path)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    out = [
        f"\ncProfile of the onnxruntime pipeline, {windows:,} windows: {total / windows * 1e6:.1f} us/window "
        "(the profiler roughly doubles every Python-level cost)",
        f"{'own us/win':>11}{'share':>7}{'cum us/win':>11}{'calls/win':>10}  function",
    ]
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in rows:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        out.append(f"{tottime / windows * 1e6:>11.2f}{tottime / total:>7.1%}{cumtime / windows * 1e6:>11.2f}"
                   f"{ncalls / windows:>10.2f}  {func} ({where})")
    sys.stdout.write("\n".join(out) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/agent.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--windows", type=int, default=DEFAULT_WINDOWS, help="windows measured (onnxruntime)")
    parser.add_argument("--sklearn-windows", type=int, default=DEFAULT_SKLEARN_WINDOWS,
                        help="windows measured for scikit-learn (it is slower; the rates are compared)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--seed", type=int, default=7, help="training and simulator seed")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="the core to pin children to")
    parser.add_argument("--profile", action="store_true", help="also run a cProfile'd onnxruntime child")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help="readings scored together at most (the agent's commit_every)")
    parser.add_argument("--live", action="store_true",
                        help="hand readings over one a call, as a live source does (commit_every stays --batch)")
    parser.add_argument("--repeat", type=int, default=5, help="agent restarts timed (the median is reported)")
    parser.add_argument("--install-platform", default="manylinux_2_28_aarch64", metavar="TAG",
                        help="also size the agent's install for this platform's wheels (a Raspberry Pi's by default; "
                             "pip downloads them); 'none' skips it")
    parser.add_argument("--run-seconds", type=float, default=DEFAULT_RUN_SECONDS,
                        help="how long the real agent runs before its RSS is read")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None or args.prepare is not None or args.start is not None:
        logging.basicConfig(level=logging.INFO if args.prepare else logging.WARNING, format="%(message)s")
        if args.child is not None:
            result = run_child(json.loads(args.child.read_text()))
        elif args.start is not None:
            result = run_start(json.loads(args.start.read_text()))
        else:
            job = json.loads(args.prepare.read_text())
            result = prepare(Path(job["workdir"]), job["seed"], job["readings"])
        sys.stdout.write(json.dumps(result) + "\n")
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cpu not in os.sched_getaffinity(0):
        parser.error(f"CPU {args.cpu} is not available; choose one of {sorted(os.sched_getaffinity(0))}")
    if min(args.windows, args.sklearn_windows) < 100:
        parser.error("measure at least 100 windows")
    if args.repeat < 1 or args.run_seconds <= 0:
        parser.error("--repeat must be >= 1 and --run-seconds > 0")
    # This process imports neither numpy nor the recipe: Linux carries ru_maxrss across fork + exec, so
    # the children's peak RSS is only their own if the process that spawns them stays small.
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-") as tmp:
        workdir = Path(tmp)
        readings = max(args.windows, args.sklearn_windows) + WARMUP_WINDOWS + WINDOW_SIZE - 1
        prepared = spawn("--prepare", workdir / "prepare.json",
                         {"workdir": str(workdir), "seed": args.seed, "readings": readings})
        base = {**prepared, "cpu": args.cpu, "warmup": WARMUP_WINDOWS, "profile": False, "batch": args.batch,
                "live": args.live}
        onnx = measure(workdir, "onnxruntime", base, scorer="onnx", windows=args.windows)
        live_onnx = None if args.live else measure(workdir, "onnxruntime-live", {**base, "live": True},
                                                   scorer="onnx", windows=args.windows)
        skl = measure(workdir, "sklearn", base, scorer="sklearn", windows=args.sklearn_windows)
        rows = measure(workdir, "sklearn-rows", base, scorer="sklearn-rows", windows=args.sklearn_windows)
        install_mb, present_mb, dists = install_size_mb()
        platform_mb: tuple[float | None, float | None] = (
            (None, None) if args.install_platform == "none" else wheel_install_mb(dists, args.install_platform))
        running = measure_running_rss(workdir, prepared["model_dir"], args.run_seconds, 1)
        gateway = {"start_s": measure_start(workdir, base, args.repeat), "run_rss_mb": running["VmRSS"],
                   "run_rss_anon_mb": running["RssAnon"], "run_rss_file_mb": running["RssFile"],
                   "run_seconds": args.run_seconds, "install_mb": install_mb, "install_distributions": dists,
                   "install_slim_mb": present_mb - slim_saving_mb(),
                   "install_platform": None if args.install_platform == "none" else args.install_platform,
                   "install_platform_mb": platform_mb[0], "install_platform_slim_mb": platform_mb[1]}
        table, summary = report(onnx, skl, rows, args.cpu, len(prepared["sensors"]), gateway, args.batch,
                                args.live, live_onnx)
        sys.stdout.write(table)
        if args.profile:
            prof = measure(workdir, "profile", base, scorer="onnx", windows=args.windows, profile=True)
            print_profile(str(workdir / "profile.prof"), prof["windows"])
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
