"""`fleetloop agent slim`: onnxruntime's C-API library and model tooling and numpy's tests go; the agent still scores.

The real proof works on a copy: this venv's numpy and onnxruntime (their packages, bundled libraries and .dist-info,
hard-linked, so the venv itself is never touched) are slimmed with the real command, then a fresh interpreter that
imports them from the copy loads the project's model with the agent's own `OnnxModel` and must give the same scores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path, PurePosixPath

import numpy as np
import onnxruntime
import pytest

from agent import slim
from agent.models.onnx import OnnxModel
from fleetloop.cli import main as fleetloop
from infra.versions import read_version

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(np.__file__).resolve().parent.parent


@pytest.mark.parametrize(("dist", "path", "kept"), [
    ("onnxruntime", "onnxruntime/capi/libonnxruntime.so.1.32.0", False),
    ("onnxruntime", "onnxruntime/capi/libonnxruntime_providers_shared.so", True),
    ("onnxruntime", "onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so", True),
    ("onnxruntime", "onnxruntime/capi/onnxruntime_inference_collection.py", True),
    ("onnxruntime", "onnxruntime/__init__.py", True),
    ("onnxruntime", "onnxruntime/transformers/fusion_attention.py", False),
    ("onnxruntime", "onnxruntime/quantization/__init__.py", False),
    ("onnxruntime", "onnxruntime/tools/__init__.py", False),
    ("onnxruntime", "onnxruntime/tools.py", True),  # not the tooling package
    ("numpy", "numpy/_core/tests/test_umath.py", False),
    ("numpy", "numpy/tests/__pycache__/test_public_api.cpython-311.pyc", False),
    ("numpy", "numpy/testing/__init__.py", True),  # numpy.testing is API, not a test suite
    ("numpy", "numpy/_core/multiarray.py", True),
    ("numpy", "numpy/tests", True),  # a file named tests (no such thing, but not a package)
    ("numpy.libs", "numpy.libs/libscipy_openblas64_.so", True),
    ("paho-mqtt", "paho/mqtt/tests/x.py", True),  # only numpy's and onnxruntime's files are touched
])
def test_what_goes_and_what_stays(dist: str, path: str, kept: bool) -> None:
    assert (slim.removable(dist, PurePosixPath(path)) is None) is kept


def test_the_capi_library_stays_if_the_python_module_names_it() -> None:
    assert slim.capi_unlinked(b"\0libstdc++.so.6\0libonnxruntime_providers_shared.so\0")
    assert not slim.capi_unlinked(b"\0libstdc++.so.6\0libonnxruntime.so.1\0")



def test_the_capi_library_goes_only_when_a_python_module_was_found_and_read() -> None:
    module = "onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so"
    unlinked, linked = b"\0libonnxruntime_providers_shared.so\0", b"\0libonnxruntime.so.1\0"
    assert slim.capi_removable([("__init__.py", lambda: b""), (module, lambda: unlinked)])
    assert not slim.capi_removable([("__init__.py", lambda: b"")])  # no module: unsure, so it stays
    assert not slim.capi_removable([(module, lambda: linked)])
    assert not slim.capi_removable([(module, lambda: None)])  # unreadable
    assert not slim.capi_removable([(module, lambda: unlinked), ("onnxruntime_pybind11_state.pyd", lambda: linked)])
    assert not slim.capi_removable([("onnxruntime_pybind11_state.pyi", lambda: unlinked)])  # a stub is no module

def _link_tree(src: Path, dst: Path) -> None:
    """A copy of `src` whose files are hard links (no bytes copied), but for .dist-info directories, which are
    copied: slim writes there, and a hard-linked RECORD is this venv's own."""
    link = shutil.copy2 if src.name.endswith(".dist-info") else os.link
    shutil.copytree(src, dst, copy_function=link, symlinks=True)


@pytest.fixture(scope="module")
def slim_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """numpy and onnxruntime as this venv has them, hard-linked into a fresh directory."""
    site = tmp_path_factory.mktemp("site")
    names = ["numpy", "numpy.libs", "onnxruntime"]
    names += [p.name for p in SITE.glob("numpy-*.dist-info")] + [p.name for p in SITE.glob("onnxruntime-*.dist-info")]
    for name in names:
        if (SITE / name).exists():
            _link_tree(SITE / name, site / name)
    return site


def test_a_slimmed_install_scores_as_the_full_one(slim_site: Path, initial_model_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = slim.plan(slim_site)
    assert {r.reason.split(" (")[0] for r in before} >= {"numpy test suite", "onnxruntime model tooling"}
    capi = [r for r in before if "C-API" in r.reason]
    ort_lib = list((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so*"))
    assert len(capi) == len(ort_lib)  # this platform's wheel ships it; the Python module does not link it

    assert fleetloop(["agent", "slim", "--site", str(slim_site), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert all(r.path.exists() for r in before)

    assert fleetloop(["agent", "slim", "--site", str(slim_site)]) == 0
    out = capsys.readouterr().out
    assert "freed" in out and f"onnxruntime=={onnxruntime.__version__}" in out
    assert not any(r.path.exists() for r in before)
    assert not (slim_site / "numpy" / "_core" / "tests").exists()  # emptied directories go too
    assert not (slim_site / "onnxruntime" / "transformers").exists()
    assert (slim_site / "numpy" / "testing" / "__init__.py").is_file()
    listed = slim.removed(slim_site)
    assert sum(len(v) for v in listed.values()) == len(before)
    recorded = [f for d in metadata.distributions(path=[str(slim_site)]) for f in slim.removed_files(d)]
    assert sum(size for _, size in recorded) == sum(r.size for r in before)  # the install's size stays known
    for info in slim_site.glob("*.dist-info"):  # pip's RECORD names the list, so an uninstall removes it
        assert (info / "RECORD").read_text().endswith(f"{info.name}/{slim.MARKER},,\n")
    for info in SITE.glob("*.dist-info"):  # and this venv was never written to
        assert not (info / slim.MARKER).exists() and slim.MARKER not in (info / "RECORD").read_text()
    assert slim.plan(slim_site) == []
    assert fleetloop(["agent", "slim", "--site", str(slim_site)]) == 0
    assert f"an earlier slim removed {len(before)} files" in capsys.readouterr().out

    model = OnnxModel(*read_version(initial_model_dir))
    X = np.random.default_rng(9).normal(size=(20, model.n_features)).astype(np.float32)
    expected = model.score(X).tolist() + [model.score(X[i : i + 1])[0] for i in range(3)]
    script = f"""
import json, sys
import numpy, onnxruntime
assert numpy.__file__.startswith({str(slim_site)!r}) and onnxruntime.__file__.startswith({str(slim_site)!r})
import agent.app  # the whole agent imports from the slimmed install
from agent.models.onnx import OnnxModel
from infra.versions import read_version
from shared.features import WindowSpec, extract
X = numpy.array(json.loads(sys.stdin.read()), dtype=numpy.float32)
model = OnnxModel(*read_version(__import__("pathlib").Path({str(initial_model_dir)!r})))
extract(numpy.random.default_rng(0).normal(size=(4, 30, 6)))
print(json.dumps(model.score(X).tolist() + [float(model.score(X[i : i + 1])[0]) for i in range(3)]))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(slim_site), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(X.tolist()), capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_no_permission_is_one_clear_line(slim_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = tmp_path / "site"
    for name in [p.name for p in SITE.glob("numpy-*.dist-info")] + ["numpy"]:
        _link_tree(SITE / name, fresh / name)

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    assert fleetloop(["agent", "slim", "--site", str(fresh)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and "sudo" in err[0]
