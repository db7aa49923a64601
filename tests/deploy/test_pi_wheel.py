"""The wheel a Raspberry Pi installs (bench/pi_proof.py builds it the same way): one pure-Python wheel for every
architecture, holding every package of the checkout, with the agent extra's requirements. The emulated aarch64
run itself is too slow for the suite (bench/pi_proof.py, docs/raspberry-pi.md)."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

from bench.pi_proof import build_wheel

ROOT = Path(__file__).resolve().parents[2]


def test_the_agent_wheel_is_pure_python_and_complete(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    # py3-none-any: nothing compiled, so the file built on x86-64 is the one an aarch64 Pi installs
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(metadata_name).decode()
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dylib"))]
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert {n.split("/")[0] for n in names if n.endswith("/__init__.py")} >= on_disk
    assert "agent/app.py" in names and "fleetloop/cli.py" in names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "Provides-Extra: agent" in metadata
    for req in project["optional-dependencies"]["agent"]:
        name = req.split(">=")[0].split("#")[0].strip()
        assert [line for line in metadata.splitlines()
                if line.startswith(f"Requires-Dist: {name}>=") and 'extra == "agent"' in line], name
