"""`fleetloop hub …` client commands stay light: an operator's command (and every poll a script makes with one) loads
no scipy, scikit-learn, FastAPI or onnxruntime, which cost seconds of start-up on a busy machine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from fleetloop.devbroker import free_port

HEAVY = ("scipy", "sklearn", "fastapi", "starlette", "onnxruntime", "skl2onnx")


def test_a_client_command_imports_nothing_heavy() -> None:
    code = textwrap.dedent(
        f"""
        import json, os, sys
        os.environ.update(FLEETLOOP_HUB_URL="http://127.0.0.1:{free_port()}", FLEETLOOP_HUB_TOKEN="t")
        from fleetloop.cli import main
        codes = [main(["hub", *args]) for args in (["devices"], ["drift", "--json"], ["rollout", "show", "x"])]
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        print(json.dumps({{"codes": codes, "heavy": heavy}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(code != 0 for code in result["codes"]), result  # nothing listens there: each command failed cleanly
    assert result["heavy"] == []
