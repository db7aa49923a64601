"""Tools that talk to a running hub stay light: an operator's `fleetloop hub …` command (and every poll a script
makes with one) and `fleetloop dev up`'s technicians load no scipy, scikit-learn or FastAPI, which cost seconds of
start-up on a busy machine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from fleetloop.devbroker import free_port

HEAVY = ("scipy", "sklearn", "fastapi", "starlette", "uvicorn", "skl2onnx")


def loaded_after(code: str) -> dict:
    """Run `code` in a fresh interpreter; what it printed last (JSON), with the heavy packages it loaded."""
    code = textwrap.dedent(code) + textwrap.dedent(f"""
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        print(json.dumps({{**result, "heavy": heavy}}))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_client_command_imports_nothing_heavy() -> None:
    result = loaded_after(f"""
        import json, os, sys
        os.environ.update(FLEETLOOP_HUB_URL="http://127.0.0.1:{free_port()}", FLEETLOOP_HUB_TOKEN="t")
        from fleetloop.cli import main
        result = {{"codes": [main(["hub", *args]) for args in (["devices"], ["drift", "--json"],
                                                               ["rollout", "show", "x"])]}}
        """)
    assert all(code != 0 for code in result["codes"]), result  # nothing listens there: each command failed cleanly
    assert result["heavy"] == []


def test_dev_up_technicians_do_not_load_the_hub_service() -> None:
    result = loaded_after("""
        import json, sys
        from fleetloop.technicians import technician_desk
        from hub.app.periodic import Periodic
        result = {"runs": Periodic("t", 1.0, print).runs}
        """)
    assert result == {"runs": 0, "heavy": []}
