"""The agent hands loading-only library pages back to the kernel once it settles (issue 12, agent/memory.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from agent.app import build_agent
from agent.memory import clean_file_mappings
from agent.models.health import HealthEvidence
from agent.settings import AgentSettings
from agent.sources.memory import ArraySource
from sim import SENSORS

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
