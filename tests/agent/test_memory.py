"""The agent hands loading-only library pages back to the kernel once it settles (issue 12, agent/memory.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agent.app import build_agent
from agent.memory import clean_file_mappings, not_owned_files
from agent.models.health import HealthEvidence
from agent.settings import AgentSettings
from agent.sources.memory import ArraySource
from sim import SENSORS

ROOT = Path(__file__).resolve().parents[2]
SMAPS = """\
55d0-55e0 r--p 00000000 08:01 7 /usr/bin/python3.11
Rss:                  64 kB
Anonymous:             0 kB
7f00-7f40 r-xp 00001000 08:01 42 /opt/venv/lib/onnxruntime (deleted)
Rss:                 256 kB
Anonymous:             0 kB
7f40-7f50 r-xp 00041000 08:01 42 /opt/venv/lib/libcold.so
Rss:                   0 kB
Anonymous:             0 kB
7f50-7f60 r--p 00000000 00:00 0 [vvar]
Rss:                   8 kB
Anonymous:             0 kB
7f60-7f70 rw-p 00000000 00:00 0 [heap]
Rss:                  64 kB
Anonymous:            64 kB
7f70-7f80 r--p 00020000 08:01 42 /opt/venv/lib/librelro.so
Rss:                  16 kB
Anonymous:            16 kB
"""


def test_only_resident_read_only_file_pages_nobody_wrote_are_chosen() -> None:
    # a path with spaces counts; not resident, pseudo-files, writable and copied-on-write (relro) mappings do not
    assert clean_file_mappings(SMAPS) == [(0x55D0, 0x55E0), (0x7F00, 0x7F40)]


def _smaps(*mappings: tuple[str, str, str, int, int]) -> str:
    """smaps text of (range, perms, path, Rss KiB, Anonymous KiB) mappings."""
    return "".join(f"{span} {perms} 00000000 08:01 42 {path}\nRss: {rss:>20} kB\nAnonymous: {anonymous:>14} kB\n"
                   for span, perms, path, rss, anonymous in mappings)


def test_the_release_and_the_ownership_check_read_the_same_mappings(tmp_path: Path) -> None:
    # not_owned_files sums, per file, every read-only file mapping: the ones clean_file_mappings picks and the
    # copied-on-write and non-resident ones it leaves out; writable mappings and pseudo-files count in neither
    lib, small = tmp_path / "lib x.so", tmp_path / "libsmall.so"
    lib.write_bytes(b"")
    small.write_bytes(b"")
    text = _smaps(("1000-2000", "r-xp", str(lib), 300, 0), ("2000-3000", "r--p", str(lib), 100, 4),
                  ("3000-4000", "rw-p", str(lib), 50, 0), ("4000-5000", "r--p", "[vvar]", 8, 0),
                  ("5000-6000", "r--p", str(small), 16, 0), ("6000-7000", "r-xp", str(small), 0, 0))
    assert clean_file_mappings(text) == [(0x1000, 0x2000), (0x5000, 0x6000)]
    someone_else = os.geteuid() + 1
    assert not_owned_files(text, uid=someone_else) == ([(400, str(lib))], 416)  # small is under min_kib
    assert not_owned_files(text, uid=someone_else, min_kib=0) == ([(400, str(lib)), (16, str(small))], 416)
    assert not_owned_files(text, uid=os.geteuid()) == ([], 416)


def test_released_pages_leave_the_process_and_scoring_unchanged(initial_model_dir: Path, tmp_path: Path) -> None:
    # A fresh interpreter (this one's pages are the test runner's): load the model, score, release, score again.
    # The kernel leaves alone pages another process maps too (onnxruntime's, while other tests run beside this one),
    # so what must leave is measured on a file only this interpreter maps: a clean, read-only mapping, fully read.
    blob = tmp_path / "blob.bin"
    with blob.open("wb") as fh:
        fh.write(os.urandom(4 << 20))
        fh.flush()
        os.fsync(fh.fileno())  # clean pages: dirty ones cannot be dropped
    code = textwrap.dedent(f"""
        import json, mmap
        import numpy as np
        from agent.memory import release_library_pages
        from pathlib import Path
        from agent.models.onnx import OnnxModel
        from infra.versions import read_version

        def blob_rss_kib():
            rss, inside = 0, False
            for line in open("/proc/self/smaps"):
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):
                    inside = line.rstrip().endswith({str(blob)!r})
                elif inside and head == "Rss:":
                    rss += int(line.split()[1])
            return rss

        model = OnnxModel(*read_version(Path({str(initial_model_dir)!r}), None))
        x = np.random.default_rng(0).normal(size=(64, model.manifest.window.n_features)).astype(np.float32)
        before = model.score(x)
        with open({str(blob)!r}, "rb") as fh:
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        touched = sum(view[i] for i in range(0, len(view), mmap.PAGESIZE))  # every page resident
        blob_before = blob_rss_kib()
        released = release_library_pages()
        blob_after = blob_rss_kib()
        after = model.score(x)
        print(json.dumps({{"released": None if released is None else released.mappings,
                          "blob": [blob_before, blob_after], "same": bool(np.array_equal(before, after))}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["released"] is not None, "MADV_PAGEOUT refused: this needs Linux 5.4+"
    assert result["released"] > 0  # the libraries' mappings were advised
    blob_before, blob_after = result["blob"]
    assert blob_before >= 4 << 10  # 4 MiB resident before
    assert blob_after < blob_before // 4, result  # and mostly gone after
    assert result["same"]  # scoring reads back what it needs: the same scores


def test_released_once_settled_again_after_a_swap_not_in_a_health_check(tmp_path, initial_model_dir, caplog) -> None:
    settings = AgentSettings(device_id="dev-mem", dev_mode=True, data_dir=tmp_path / "a",
                             initial_model=initial_model_dir, release_pages_after_s=1e-6)
    values = np.random.default_rng(0).normal(size=(200, len(SENSORS))) + 20
    agent = build_agent(settings, ArraySource(SENSORS, values), connect=False)
    with caplog.at_level(logging.INFO, logger="agent.runtime"):
        agent.run()
    assert any(r.getMessage().startswith("released library pages of ") for r in caplog.records)
    assert agent._release_due == float("inf")  # once, not on every step
    agent.switch_model(agent.model)
    assert agent._release_due < float("inf")  # a swap loads code again: released again once it settles

    agent.models.health = HealthEvidence(baseline_rss_mb=None)  # a swapped-in model under its health check
    caplog.clear()
    agent._release_pages()
    assert not any(r.getMessage().startswith("released") for r in caplog.records)
    assert agent._release_due < float("inf")  # put off until the check is over, not dropped

    never = build_agent(AgentSettings(device_id="dev-mem2", dev_mode=True, data_dir=tmp_path / "b",
                                      initial_model=initial_model_dir, release_pages_after_s=None),
                        ArraySource(SENSORS, values), connect=False)
    assert never._release_due == float("inf")


def test_doc_examples() -> None:
    import doctest

    import agent.memory

    result = doctest.testmod(agent.memory)
    assert result.attempted > 0 and result.failed == 0


NOBODY = 65534


def _release_as_nobody(site: Path | None, workdir: Path) -> dict[str, object]:
    """A child running as uid 65534 imports numpy and onnxruntime (from `site` when given, else this venv's, which
    root owns), scores with them, releases its library pages and reports what happened."""
    shutil.copy2(ROOT / "agent" / "memory.py", workdir / "agent_memory.py")  # stdlib only: no checkout access needed
    code = textwrap.dedent(f"""
        import json, sys
        sys.path[:0] = [{str(workdir)!r}] + ([{str(site)!r}] if {site is not None!r} else [])
        import numpy, onnxruntime
        from agent_memory import release_library_pages
        released = release_library_pages()
        print(json.dumps({{"ort": onnxruntime.__file__, "before": released.rss_before_kib,
                          "after": released.rss_after_kib, "not_owned": list(released.not_owned),
                          "said": str(released)}}))
    """)
    setpriv = shutil.which("setpriv")  # util-linux's: switching in preexec_fn could not exec this interpreter here
    assert setpriv, "setpriv (util-linux) is needed to run a child as another user"
    as_nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    out = subprocess.run([*as_nobody, sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False, cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_pages_are_released_only_for_the_owner_of_the_library_files() -> None:
    """Linux pages a file's pages out only for a process that owns the file or may write it: an agent running as a
    user that does not own its install keeps them all and says what to change; one that owns them gets them back."""
    if os.geteuid() != 0:
        pytest.fail("this test switches a child to uid 65534: run the suite as root, as `make test` and CI do")
    site = Path(np.__file__).resolve().parent.parent
    work = Path(tempfile.mkdtemp(prefix="fleetloop-owner-"))
    try:
        os.chmod(work, 0o755)
        root_owned = _release_as_nobody(None, work)
        assert str(root_owned["ort"]).startswith(str(site))
        assert any("onnxruntime" in p for p in root_owned["not_owned"]), root_owned  # type: ignore[union-attr]
        assert "does not own" in str(root_owned["said"]) and "install the agent as the user" in str(root_owned["said"])
        assert int(root_owned["before"]) - int(root_owned["after"]) < 4096, root_owned  # nothing much released

        owned = work / "site"
        for name in ("numpy", "numpy.libs", "onnxruntime"):
            if (site / name).exists():
                shutil.copytree(site / name, owned / name, symlinks=True)
        for path in [owned, *owned.rglob("*")]:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        mine = _release_as_nobody(owned, work)
        assert str(mine["ort"]).startswith(str(owned))
        assert not [p for p in mine["not_owned"] if str(owned) in p], mine  # type: ignore[union-attr]
        assert "does not own" not in str(mine["said"]), mine  # the interpreter's own few MiB are no reason to warn
        assert int(mine["before"]) - int(mine["after"]) > 8192, mine  # onnxruntime's pages went (~15 MB here)
    finally:
        shutil.rmtree(work, ignore_errors=True)
