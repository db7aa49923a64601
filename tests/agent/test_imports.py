"""The agent stays light: importing it, loading its settings and running predictions loads no scikit-learn, scipy,
fastapi, sqlite-utils, pydantic or pydantic-settings (the wire contract, the settings and the simulator's config are
msgspec structs); and what only rare paths need (signature checks, model archives, other sources) waits for them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FORBIDDEN = ("sklearn", "scipy", "fastapi", "skl2onnx", "starlette", "sqlite_utils", "pydantic", "pydantic_settings")
# imported only on the paths that need them: a pinned signing key, a model download, the replay and MQTT sources
LAZY = ("cryptography", "tarfile", "agent.sources.replay", "agent.sources.mqtt")


def test_agent_prediction_path_imports_nothing_heavy(initial_model_dir, tmp_path):
    code = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        import agent.cli, agent.app, agent.runtime, agent.link, agent.outbox, agent.sources.sim
        from agent.app import build_agent
        from agent.settings import AgentSettings
        from agent.sources.sim import SimSource

        settings = AgentSettings.load(None, device_id="dev-imp", dev_mode=True, data_dir={str(tmp_path)!r},
                                      initial_model={str(initial_model_dir)!r})
        source = SimSource("dev-imp", seed=1, rate=0, limit=400)
        agent = build_agent(settings, source, connect=False)
        counters = agent.run(max_windows=50)
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
        lazy = sorted(set(sys.modules) & set({LAZY!r}))
        print(json.dumps({{"windows": counters.windows, "heavy": heavy, "lazy": lazy}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["windows"] == 50
    assert result["heavy"] == []
    assert result["lazy"] == []  # an unsigned dev agent with the sim source never needed them
