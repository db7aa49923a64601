"""The Pi proof: the agent-only install on linux/aarch64 (Debian arm64), run under qemu user-mode emulation.

No Raspberry Pi here, so this builds the closest thing: a Debian arm64 root filesystem (``mmdebstrap
--variant=extract``: python3 and python3-venv with their dependencies, no maintainer scripts, so no
foreign binary has to run while it is made), cached in ``--cache-dir`` so reruns skip it. Every aarch64
process then runs as ``chroot ROOTFS /usr/bin/qemu-aarch64-static …`` (a static x86-64 qemu copied into
the root filesystem; no binfmt_misc registration, which this machine does not have, so nothing emulated
may exec another aarch64 program: the venv is made ``--without-pip`` and pip bootstraps from Debian's
bundled wheel in-process; the project goes in as a wheel built on the host). Steps:

1. rootfs (cached): mmdebstrap, merged-/usr links, qemu, resolv.conf and the host's CA bundle (pip's
   HTTPS), the standard library byte-compiled once (as Debian's postinst does on a real device).
2. install: a fresh venv at ``/opt/fleetloop/venv`` (the README's path), ``pip install --only-binary=:all:
   'fleetloop-….whl[agent]'`` from PyPI: every dependency must come as an aarch64 wheel (nothing compiled);
   then ``fleetloop agent slim`` (unless ``--no-slim``), so what follows runs on the slimmed install.
3. the agent, emulated: ``bench/agent.py``'s own ``--start`` and ``--child`` modes and ``install_size_mb``
   (the file is copied into the rootfs beside pyproject.toml, without the source tree, so the installed
   package is what runs) on a model the host trains with ``bench/agent.py --prepare``; then the smoke:
   ``fleetloop agent run`` (sim source) against a mosquitto on the host (``DevBroker``, a device user and
   password: qemu-user shares the host's network), asserting the retained ``online`` status reached the
   broker, predictions are in the agent's SQLite file and it stopped cleanly on SIGTERM.

    nice -n 15 .venv/bin/python bench/pi_proof.py [--cache-dir DIR] [--suite trixie] [--json]

Needs root (chroot) and Debian's qemu-user-static and mmdebstrap (installed with apt-get when missing).
Every speed and memory number is EMULATED on x86-64: qemu's translation adds time and its own memory, so
they bound nothing on a real Pi; what the run proves is that the install and the agent work on aarch64.
With ``--json`` the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.agent import CHILD_ENV, DEFAULT_BATCH, WARMUP_WINDOWS, WINDOW_SIZE, spawn  # noqa: E402

log = logging.getLogger("bench.pi_proof")

QEMU = "qemu-aarch64-static"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"  # root's tool: /usr/sbin may not be on PATH
GUEST_QEMU = "/usr/bin/qemu-aarch64-static"
GUEST_VENV = "/opt/fleetloop/venv"
GUEST_PROOF = "/opt/fleetloop/proof"  # bench/agent.py + pyproject.toml, without the source tree
GUEST_WORK = "/root/pi-proof"  # model, readings, databases
GUEST_CA = "/etc/ssl/certs/ca-certificates.crt"
# libstdc++6: the manylinux wheels (numpy, onnxruntime) link the system's C++ runtime; every Raspberry Pi OS and
# Debian install has it, a bare extract does not
PACKAGES = ("python3", "python3-venv", "libstdc++6")
READY = ".fleetloop-rootfs-ready"  # written last: a half-made rootfs is never reused
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fleetloop"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEVICE = "pi-0"


# -- the emulated machine -----------------------------------------------------------------------------
class Guest:
    """A Debian arm64 root filesystem whose programs run through qemu-aarch64-static inside a chroot."""

    def __init__(self, rootfs: Path) -> None:
        self.rootfs = rootfs

    def host(self, guest_path: str) -> Path:
        """The host path of a path inside the rootfs."""
        return self.rootfs / guest_path.lstrip("/")

    def guest(self, host_path: str | Path) -> str:
        """The rootfs path of a host path under it."""
        return "/" + str(Path(host_path).resolve().relative_to(self.rootfs.resolve()))

    def argv(self, *cmd: str) -> list[str]:
        return [CHROOT, str(self.rootfs), GUEST_QEMU, *cmd]

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        """A clean environment: nothing of the host's Python or pip settings leaks in (its pip config points
        at host-only wheel folders; PYTHONDONTWRITEBYTECODE would make every emulated start compile again)."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                "SSL_CERT_FILE": GUEST_CA, "PIP_CERT": GUEST_CA, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_CONFIG_FILE": os.devnull, **CHILD_ENV, **extra}

    def run(self, *cmd: str, timeout: float = 3600, **env: str) -> str:
        """Run an aarch64 command to completion; its stdout (stderr goes to the log on failure)."""
        out = subprocess.run(self.argv(*cmd), capture_output=True, text=True, env=self.env(**env), timeout=timeout,
                             check=False)
        if out.returncode != 0:
            raise SystemExit(f"emulated {' '.join(cmd[:4])} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
        return out.stdout

    def popen(self, *cmd: str, stdout: Any, stderr: Any, **env: str) -> subprocess.Popen[bytes]:
        # chroot execs qemu, so the pid is the emulated process's own (its /proc/PID/status is qemu's + the guest's)
        return subprocess.Popen(self.argv(*cmd), stdout=stdout, stderr=stderr, env=self.env(**env))


def ensure_tools() -> None:
    """qemu-user-static and mmdebstrap from Debian's packages; chroot needs root."""
    if os.geteuid() != 0:
        raise SystemExit("run as root: the emulated agent runs in a chroot")
    tools = ((QEMU, "qemu-user-static"), ("mmdebstrap", "mmdebstrap"))
    missing = [pkg for tool, pkg in tools if not shutil.which(tool)]
    if missing:
        log.info("installing %s with apt-get", " ".join(missing))
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def make_rootfs(rootfs: Path, suite: str, mirror: str) -> float:
    """Build (or reuse) the arm64 rootfs; seconds spent building (0 when reused)."""
    recipe = f"{suite} {mirror} {','.join(PACKAGES)}\n"
    if (rootfs / READY).exists() and (rootfs / READY).read_text() == recipe:
        log.info("rootfs: reusing %s", rootfs)
        return 0.0
    started = time.perf_counter()
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    log.info("rootfs: mmdebstrap arm64 %s into %s", suite, rootfs)
    subprocess.run(["mmdebstrap", "--arch=arm64", "--variant=extract", f"--include={','.join(PACKAGES)}",
                    suite, str(rootfs), mirror], check=True, stdout=subprocess.DEVNULL)
    for link in ("bin", "sbin", "lib"):  # merged /usr, which the extract variant leaves to a maintainer script
        if not (rootfs / link).exists():
            (rootfs / link).symlink_to(f"usr/{link}")
    for d in ("root", "proc", "tmp", "etc/ssl/certs"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    provision(rootfs)
    guest = Guest(rootfs)
    log.info("rootfs: byte-compiling the standard library (emulated; minutes on a loaded machine)")
    guest.run("/usr/bin/python3", "-c", "import compileall, sysconfig; "
              "compileall.compile_dir(sysconfig.get_path('stdlib'), quiet=1)")
    python = guest.run("/usr/bin/python3", "-c", "import sys; print(sys.version.split()[0])").strip()
    log.info("rootfs: python %s ready in %.0f s", python, time.perf_counter() - started)
    (rootfs / READY).write_text(recipe)
    return time.perf_counter() - started


def provision(rootfs: Path) -> None:
    """What a booted Debian would have and the extract variant does not: qemu itself (for the chroot), DNS and
    the trust store (this machine's own CA bundle, so pip reaches PyPI as the host's pip does)."""
    shutil.copy2(shutil.which(QEMU) or QEMU, rootfs / GUEST_QEMU.lstrip("/"))
    for name in ("resolv.conf", "hosts"):
        if Path("/etc", name).exists():
            shutil.copyfile(Path("/etc", name), rootfs / "etc" / name)
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    shutil.copyfile(ca, rootfs / GUEST_CA.lstrip("/"))
    # onnxruntime's cpuinfo reads the CPU lists from sysfs, which a chroot lacks: the host's (qemu shows its CPUs)
    cpu = rootfs / "sys/devices/system/cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        shutil.copyfile(Path("/sys/devices/system/cpu") / name, cpu / name)


# -- the install ---------------------------------------------------------------------------------------
def build_wheel(out: Path) -> Path:
    """The project's wheel (pure Python), built on the host from a copy of the tree (no egg-info in the checkout)."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    tree = ["pyproject.toml", "README.md", *(pattern.rstrip("*") for pattern in packages["include"])]
    with tempfile.TemporaryDirectory(prefix="fleetloop-wheel-") as tmp:
        src = Path(tmp) / "src"
        for name in tree:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                src.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, src / name)
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                               capture_output=True, text=True, check=False)
        if built.returncode != 0:
            raise SystemExit(f"building the wheel failed:\n{built.stderr[-4000:]}")
    (wheel,) = out.glob("fleetloop-*.whl")
    return wheel


def install_agent(guest: Guest, wheel_guest_path: str, reuse: bool) -> dict[str, Any]:
    """A fresh venv and ``pip install --only-binary=:all: fleetloop[agent]``, all emulated; seconds and pip's list.
    With `reuse`, an existing venv only gets this checkout's wheel again (no dependency changes)."""
    venv = guest.host(GUEST_VENV)
    reused = reuse and (venv / "bin" / "python").exists()
    if reused:
        guest.run(f"{GUEST_VENV}/bin/python", "-m", "pip", "install", "-q", "--no-compile", "--no-deps",
                  "--force-reinstall", wheel_guest_path)
        return {"install_s": None, "versions": pip_list(guest)}
    if venv.exists():
        shutil.rmtree(venv)
    started = time.perf_counter()
    guest.run("/usr/bin/python3", "-m", "venv", "--without-pip", GUEST_VENV)
    (pip_wheel,) = guest.host("/usr/share/python-wheels").glob("pip-*.whl")
    pip_guest = guest.guest(pip_wheel)
    # ensurepip would run pip in a subprocess (an aarch64 exec): run pip from its wheel in this process instead
    # --no-compile: pip would byte-compile every file it installs (sympy alone is ~1,500), which takes many
    # minutes emulated; Python writes the caches of what the agent imports on its first start instead
    guest.run(f"{GUEST_VENV}/bin/python", f"{pip_guest}/pip", "install", "-q", "--no-compile", "--no-index",
              pip_guest)
    guest.run(f"{GUEST_VENV}/bin/python", "-m", "pip", "install", "-q", "--no-compile", "--only-binary=:all:",
              f"{wheel_guest_path}[agent]")
    seconds = time.perf_counter() - started
    dists = pip_list(guest)
    log.info("install: %d distributions in %.0f s (emulated pip)", len(dists), seconds)
    return {"install_s": seconds, "versions": dists}


def pip_list(guest: Guest) -> dict[str, str]:
    frozen = guest.run(f"{GUEST_VENV}/bin/python", "-m", "pip", "list", "--format=json")
    return {d["name"].lower(): d["version"] for d in json.loads(frozen)}


def stage_proof_files(guest: Guest) -> None:
    """bench/agent.py and pyproject.toml in the rootfs, with no source tree beside them: they import the venv's."""
    proof = guest.host(GUEST_PROOF)
    (proof / "bench").mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "agent.py", proof / "bench" / "agent.py")
    shutil.copy2(ROOT / "pyproject.toml", proof / "pyproject.toml")


def guest_install_mb(guest: Guest) -> tuple[float, float, list[str]]:
    """bench/agent.py's install_size_mb, run by the emulated interpreter over the venv's own metadata: MiB as pip
    installed it and of the files there now (after `fleetloop agent slim`, the slimmed size), and the distributions."""
    code = ("import importlib.util, json, sys; "
            f"spec = importlib.util.spec_from_file_location('bench_agent', '{GUEST_PROOF}/bench/agent.py'); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(json.dumps(m.install_size_mb()))")
    installed, present, dists = json.loads(guest.run(f"{GUEST_VENV}/bin/python", "-c", code).strip().splitlines()[-1])
    return float(installed), float(present), list(dists)


def dir_mb(path: Path) -> float:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


# -- the agent, emulated -----------------------------------------------------------------------------
def guest_bench(guest: Guest, mode: str, job: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """bench/agent.py ``--start`` or ``--child`` in the emulated venv; its JSON and the host's time at spawn."""
    job_path = guest.host(f"{GUEST_WORK}/{mode.strip('-')}.json")
    job_path.write_text(json.dumps(job))
    spawned = time.time()
    out = guest.run(f"{GUEST_VENV}/bin/python", f"{GUEST_PROOF}/bench/agent.py", mode, guest.guest(job_path))
    return json.loads(out.strip().splitlines()[-1]), spawned


def measure_start(guest: Guest, base: dict[str, Any], repeat: int) -> tuple[float, float]:
    """Median seconds from spawning the emulated agent to its first prediction (restarts, model installed), and
    the median CPU seconds of those whole processes (which a loaded machine stretches less than wall time)."""
    job = {**base, "data_dir": f"{GUEST_WORK}/db-start"}
    guest_bench(guest, "--start", job)  # first start: database, model install, and Python's bytecode caches
    times, cpu = [], []
    for _ in range(repeat):
        before = children_cpu_s()
        result, spawned = guest_bench(guest, "--start", job)
        times.append(result["first_prediction_at"] - spawned)
        cpu.append(children_cpu_s() - before)
    log.info("start to first prediction (emulated): %s s; CPU %s s", ", ".join(f"{t:.2f}" for t in times),
             ", ".join(f"{t:.2f}" for t in cpu))
    return statistics.median(times), statistics.median(cpu)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # chroot execs qemu: the emulated process's own time
    return usage.ru_utime + usage.ru_stime


def hot_path(guest: Guest, base: dict[str, Any], windows: int, cpu: int) -> dict[str, Any]:
    """bench/agent.py's onnxruntime child, emulated: windows/s, p99 and ru_maxrss under qemu."""
    job = {**base, "data_dir": f"{GUEST_WORK}/db-hot", "profile_out": f"{GUEST_WORK}/hot.prof", "scorer": "onnx",
           "windows": windows, "cpu": cpu, "batch": DEFAULT_BATCH}
    result, _ = guest_bench(guest, "--child", job)
    log.info("hot path (emulated): %.0f windows/s, p99 %.3f ms", result["windows_per_s"], result["p99_ms"])
    return result


def smoke(guest: Guest, model_dir: str, seconds: float, rate: float) -> dict[str, Any]:
    """``fleetloop agent run`` (sim source, device user and password) against a mosquitto on the host, then
    SIGTERM: the retained online status must reach the broker and predictions must be in agent.db."""
    from fleetloop.devbroker import HUB_USER, DevBroker
    from shared.topics import Kind, Topics

    data_dir = f"{GUEST_WORK}/db-smoke"
    if guest.host(data_dir).exists():
        shutil.rmtree(guest.host(data_dir))
    db_path = guest.host(f"{data_dir}/agent.db")
    with DevBroker(devices=[DEVICE]) as broker:
        status_topic = Topics(broker.prefix).topic(DEVICE, Kind.STATUS)
        statuses = watch(broker.port, HUB_USER, broker.password(HUB_USER), status_topic)
        cmd = [f"{GUEST_VENV}/bin/python", "-c", "from fleetloop.cli import main; raise SystemExit(main())",
               "agent", "run", "--dev", "--device-id", DEVICE, "--data-dir", data_dir, "--initial-model", model_dir,
               "--mqtt-port", str(broker.port), "--source", "sim", "--rate", str(rate)]
        log_path = guest.host(f"{GUEST_WORK}/smoke.log")
        with log_path.open("w") as log_file:
            spawned = time.time()
            proc = guest.popen(*cmd, stdout=subprocess.DEVNULL, stderr=log_file,
                               FLEETLOOP_AGENT_MQTT_PASSWORD=broker.password(DEVICE))
        try:
            first_prediction = wait_first_prediction(db_path, proc, deadline=spawned + 900)
            time.sleep(seconds)  # serving: the RSS is read `seconds` after the first prediction
            if proc.poll() is not None:
                raise SystemExit(f"agent run exited early ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
            rss_mb = vm_rss_mb(proc.pid)
        finally:
            proc.terminate()
            code = proc.wait(timeout=300)
        online = statuses.wait_online(timeout=30)
        statuses.stop()
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        predictions, last_ts = db.execute("SELECT count(*), max(ts) FROM predictions").fetchone()
        outbox = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    result = {"exit_code": code, "online_status": online, "predictions": predictions, "outbox_rows": outbox,
              "first_prediction_s": first_prediction - spawned, "rss_mb": rss_mb, "seconds": seconds, "rate": rate,
              "last_ts": last_ts}
    problems = [p for p, bad in (("the agent did not stop cleanly on SIGTERM", code != 0),
                                 ("no retained online status reached the broker", not online),
                                 ("no predictions in agent.db", not predictions)) if bad]
    if problems:
        raise SystemExit(f"smoke failed: {'; '.join(problems)}\n{log_path.read_text()[-4000:]}")
    log.info("smoke: %d predictions, online status seen, clean stop; RSS %.0f MiB (emulated)", predictions, rss_mb)
    return result


class StatusWatch:
    """A hub-side MQTT client on the device's status topic (host Python, paho)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.payloads: list[bytes] = []
        self.cond = threading.Condition()

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.cond:
            self.payloads.append(bytes(message.payload))
            self.cond.notify_all()

    def wait_online(self, timeout: float) -> bool:
        def seen() -> bool:
            return any(b'"online"' in p for p in self.payloads)

        with self.cond:
            return self.cond.wait_for(seen, timeout)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def watch(port: int, user: str, password: str, topic: str) -> StatusWatch:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pi-proof-{os.getpid()}")
    client.username_pw_set(user, password)
    w = StatusWatch(client)
    client.on_message = w.on_message
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return w


def wait_first_prediction(db_path: Path, proc: subprocess.Popen[bytes], deadline: float) -> float:
    """Poll agent.db (read-only, from the host) until it holds a prediction; the host time it was first seen."""
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"agent run exited ({proc.returncode}) before its first prediction")
        if db_path.exists():
            try:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
                    if db.execute("SELECT 1 FROM predictions LIMIT 1").fetchone():
                        return time.time()
            except sqlite3.OperationalError:  # not created yet
                pass
        time.sleep(0.1)
    raise SystemExit("no prediction in agent.db before the deadline")


def vm_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) / 1024.0


# -- report -------------------------------------------------------------------------------------------
def report(r: dict[str, Any]) -> str:
    v = r["versions"]
    lines = [
        f"fleetloop Pi proof: Debian {r['suite']} arm64 (Python {r['guest_python']}) under qemu-aarch64 user-mode "
        f"emulation on {platform.machine()}",
        f"agent install: fleetloop[agent] from PyPI, aarch64 wheels only: onnxruntime {v.get('onnxruntime')}, "
        f"numpy {v.get('numpy')}, paho-mqtt {v.get('paho-mqtt')}, cryptography {v.get('cryptography')}",
        "",
        f"{'measure':<38}{'value':>12}  note",
        f"{'install MB (fleetloop[agent] closure)':<38}{r['install_mb']:>12.1f}  bench/agent.py's RECORD sum, real",
        *([] if r["install_slim_mb"] is None else [
            f"{'install MB after fleetloop agent slim':<38}{r['install_slim_mb']:>12.1f}  real; the runs below use it"
        ]),
        f"{'venv MB (all files)':<38}{r['venv_mb']:>12.1f}  incl. pip and the project, real",
        f"{'install s':<38}{'reused' if r['install_s'] is None else format(r['install_s'], '.0f'):>12}  "
        "EMULATED pip + download (--no-compile)",
        f"{'start to first prediction s':<38}{r['start_s']:>12.2f}  EMULATED, median of {r['repeat']} restarts",
        f"{'start, CPU s of the whole process':<38}{r['start_cpu_s']:>12.2f}  EMULATED, to exit (median)",
        f"{'windows/s, one core':<38}{r['windows_per_s']:>12,.0f}  EMULATED, {r['windows']:,} windows",
        f"{'windows per CPU second':<38}{r['cpu_windows_per_s']:>12,.0f}  EMULATED, less load-dependent",
        f"{'p99 ms per window':<38}{r['p99_ms']:>12.3f}  EMULATED",
        f"{'hot-path RSS MB (ru_maxrss)':<38}{r['hot_rss_mb']:>12.1f}  EMULATED: includes qemu's own memory",
        f"{'smoke: agent run RSS MB':<38}{r['run_rss_mb']:>12.1f}  EMULATED, {r['smoke_seconds']:g} s after the first "
        "prediction",
        f"{'smoke: start to first prediction s':<38}{r['smoke_first_prediction_s']:>12.2f}  EMULATED, seen in agent.db",
        f"{'smoke: predictions in agent.db':<38}{r['smoke_predictions']:>12,}  at {r['smoke_rate']:g} readings/s",
        "",
        "smoke checks: online status on the broker, predictions in agent.db, clean stop on SIGTERM: passed",
        "EMULATED numbers are qemu on a shared x86-64 machine, not Pi speed: they show the install and the agent work",
        "on aarch64; install MB is the same bytes a Pi gets.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/pi_proof.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the rootfs is kept between runs (default {DEFAULT_CACHE})")
    parser.add_argument("--suite", default="trixie", help="Debian suite of the rootfs (default trixie)")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror")
    parser.add_argument("--windows", type=int, default=5000, help="hot-path windows measured under emulation")
    parser.add_argument("--repeat", type=int, default=3, help="emulated restarts timed (median reported)")
    parser.add_argument("--smoke-seconds", type=float, default=30.0, help="how long the smoke's agent runs")
    parser.add_argument("--rate", type=float, default=20.0, help="the smoke's sim readings per second")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="core for the hot path")
    parser.add_argument("--reuse-venv", action="store_true",
                        help="keep the emulated venv of a previous run (only this checkout's wheel is reinstalled)")
    parser.add_argument("--no-slim", action="store_true",
                        help="skip `fleetloop agent slim` after the install (the runs then use the whole install)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.windows < 100 or args.repeat < 1 or args.smoke_seconds <= 0 or args.rate <= 0:
        parser.error("need --windows >= 100, --repeat >= 1, --smoke-seconds > 0 and --rate > 0")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    ensure_tools()
    rootfs = args.cache_dir / f"pi-rootfs-{args.suite}-arm64"
    rootfs_s = make_rootfs(rootfs, args.suite, args.mirror)
    provision(rootfs)  # a cached rootfs gets this machine's qemu, DNS and CA bundle again
    guest = Guest(rootfs)
    work = guest.host(GUEST_WORK)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    wheel = build_wheel(work / "wheels")
    installed = install_agent(guest, guest.guest(wheel), args.reuse_venv)
    stage_proof_files(guest)
    install_mb, _, dists = guest_install_mb(guest)
    slim_mb, slim_said = None, None
    if not args.no_slim:  # the README's optional step; everything below then runs on the slimmed install
        slim_said = guest.run(f"{GUEST_VENV}/bin/python", "-c", "from fleetloop.cli import main; "
                              "raise SystemExit(main())", "agent", "slim").strip().splitlines()[-1]
        slim_mb = guest_install_mb(guest)[1]
        log.info("fleetloop agent slim: %s (install %.1f -> %.1f MB)", slim_said, install_mb, slim_mb)

    readings = args.windows + WARMUP_WINDOWS + WINDOW_SIZE - 1
    prepared = spawn("--prepare", work / "prepare.json", {"workdir": str(work), "seed": 7, "readings": readings})
    base = {**{k: guest.guest(prepared[k]) for k in ("model_dir", "estimator", "readings")},
            "sensors": prepared["sensors"], "warmup": WARMUP_WINDOWS, "profile": False}
    start_s, start_cpu_s = measure_start(guest, base, args.repeat)
    hot = hot_path(guest, base, args.windows, args.cpu)
    ran = smoke(guest, base["model_dir"], args.smoke_seconds, args.rate)
    guest_python = guest.run("/usr/bin/python3", "-c", "import sys; print(sys.version.split()[0])").strip()

    summary = {
        "emulated": True, "host_machine": platform.machine(), "suite": args.suite, "guest_python": guest_python,
        "rootfs_build_s": round(rootfs_s, 1),
        "install_s": None if installed["install_s"] is None else round(installed["install_s"], 1),
        "install_mb": round(install_mb, 1), "install_distributions": dists,
        "install_slim_mb": None if slim_mb is None else round(slim_mb, 1), "slim_output": slim_said,
        "venv_mb": round(dir_mb(guest.host(GUEST_VENV)), 1), "versions": installed["versions"],
        "start_s": round(start_s, 3), "start_cpu_s": round(start_cpu_s, 3), "repeat": args.repeat,
        "windows": hot["windows"],
        "windows_per_s": round(hot["windows_per_s"], 1), "cpu_windows_per_s": round(hot["cpu_windows_per_s"], 1),
        "p99_ms": round(hot["p99_ms"], 4), "hot_rss_mb": round(hot["rss_mb"], 1),
        "heavy_modules": hot["heavy_modules"], "run_rss_mb": round(ran["rss_mb"], 1),
        "smoke_seconds": args.smoke_seconds, "smoke_rate": args.rate, "smoke_predictions": ran["predictions"],
        "smoke_outbox_rows": ran["outbox_rows"], "smoke_first_prediction_s": round(ran["first_prediction_s"], 2),
        "smoke_online_status": ran["online_status"], "smoke_exit_code": ran["exit_code"],
    }
    sys.stdout.write(report(summary))
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
