"""Schemathesis over the app's own OpenAPI schema, as an operator: no input makes the hub answer 5xx, every status
it answers is documented, and every documented response body matches its schema.

Schemathesis's lazy pytest loader (``schemathesis.pytest.from_fixture``) does not run under pytest 9, so each
operation's Hypothesis strategy is driven here directly, against the real app on a real SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.core.result import Ok

from tests.hub.api.conftest import T0, TOKEN, anomaly, online, running_hub, sample

OPERATOR = {"Authorization": f"Bearer {TOKEN['operator']}"}
MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def hub_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "hub.db"
    with running_hub(path) as hub:
        hub.ingest(online(), anomaly(trace_id="trace-1"), sample(reason="low_confidence", ts=T0 + 1))
        hub.store.save_drift_report({"scope": "fleet", "verdict": "no_drift"}, "fleet", "no_drift", T0)
        yield schemathesis.openapi.from_asgi("/openapi.json", hub.app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_server_errors(hub_schema: schemathesis.BaseSchema, mode: GenerationMode) -> None:
    failures: list[str] = []
    operations = []
    for result in hub_schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=OPERATOR, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:  # nothing to get wrong: an operation without parameters has no negative input
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
