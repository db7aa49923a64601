"""Schemathesis over the app's own OpenAPI schema, with each role's token and with none, against a hub that holds
devices, predictions, annotations, a label set, three signed ONNX versions, a running rollout and a training job
(`tests.hub.api.populated`).

For every role: no input makes the hub answer 5xx, every status it answers is documented, and every documented
response body matches its schema. Beyond schemathesis's checks, the role table below is the oracle for who may
call what: a refused caller gets exactly 401 (no known token) or 403 (a token of the wrong role), an allowed one
never does, and a run whose every write was refused leaves the store byte for byte as it was. The caller is
judged by the request as sent: negative cases also drop or garble the ``Authorization`` header. One answer comes
before the role check on purpose: a body that is not JSON at all, from a known token, is refused as unparsable
(400 or 422) before any dependency runs (FastAPI parses the body first; tokenless bodies are refused unread).

Generated ids rarely name anything, so a case has its path, query and body fields that name an id (``device_id``,
``rollout_id``, ``candidate``, …) replaced, some of the time, with ids that exist: the fuzz then reaches the code
that renders and acts on real versions, rollouts and label sets, not only the 404s.

Schemathesis's lazy pytest loader (``schemathesis.pytest.from_fixture``) does not run under pytest 9, so each
operation's Hypothesis strategy is driven here directly, against the real app on a real SQLite file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.core.result import Ok

from tests.hub.api.conftest import TOKEN, TOKENS, running_hub
from tests.hub.api.populated import Populated, populate

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
Role = str | None
ROLES: list[Role] = [None, "viewer", "technician", "operator"]
# Examples per operation and generation mode. A refused role meets the same 401/403 on most operations, so it
# needs fewer; the operator reaches every handler. Measured: the module runs in 30-50 s on the shared 2-core machine
# (about 7 s of it building and populating the hub).
MAX_EXAMPLES: dict[Role, int] = {None: 4, "viewer": 6, "technician": 8, "operator": 20}

# The role table, written down from the API's documentation (hub.api.deps and each route's docstring), not read
# from the routes: every other GET is for any token; a write missing from it fails the run until it is added.
PUBLIC = {"GET /metrics", "GET /health", "GET /models/{version}/artifact"}
TECHNICIAN = {"GET /queue", "POST /annotations", "POST /annotations/batch", "POST /incidents/{incident_id}/acknowledge",
              "POST /incidents/{incident_id}/resolve", "POST /incidents/resolve", "POST /incidents/missed",
              "POST /traces/{trace_id}/window"}
OPERATOR = {"POST /labels/validate", "POST /drift/reference", "POST /models", "POST /models/{version}/skip-gate",
            "POST /rollouts", "POST /rollouts/revert",
            "POST /rollouts/{rollout_id}/retry", "POST /rollouts/{rollout_id}/{action}", "POST /retrain"}
# Tables a technician's fuzzing may change: annotations and the hub events recording them; incidents (acknowledged,
# resolved, a missed failure) with their history and the notifications each change queues; raw-window requests.
TECHNICIAN_WRITES = {"annotations", "events", "incidents", "incident_events", "incident_notifications", "raw_windows"}


def may_call(role: Role, label: str) -> bool:
    method = label.split(" ", 1)[0]
    if label in PUBLIC:
        return True
    if role is None:
        return False
    if label in OPERATOR:
        return role == "operator"
    if label in TECHNICIAN:
        return role in ("technician", "operator")
    assert method == "GET", f"{label}: a write missing from the role table of {__name__}"
    return True


def sent_as(response: Any) -> tuple[Role, bool]:
    """The role of the token the request carried (None: no known token), and whether its body is not JSON."""
    scheme, _, token = (response.request.headers.get("Authorization") or "").partition(" ")
    role = TOKENS.get(token.strip()) if scheme.lower() == "bearer" else None
    body = response.request.body
    try:
        json.loads(body or b"null")
    except ValueError:  # UnicodeDecodeError included
        return role, True
    return role, False


def expected_refusal(label: str, response: Any) -> set[int] | None:
    """The statuses `response` may have if the request as sent is refused by the role table, else None."""
    sent, unparsable = sent_as(response)
    if may_call(sent, label):
        return None
    if sent is None:
        return {401}
    return {403, 400, 422} if unparsable else {403}


def snapshot(path: Path) -> dict[str, str]:
    """A digest of every table's rows, read through a connection of its own (WAL: only committed rows)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: hashlib.sha256(repr(db.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall()).encode())
                .hexdigest() for t in tables}


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[Populated]:
    work = tmp_path_factory.mktemp("fuzz")
    with running_hub(work / "hub.db") as hub:
        yield populate(hub, initial_model_dir, work)


def with_known_ids(case: schemathesis.Case, picks: dict[str, str | None]) -> schemathesis.Case:
    """`case` with the id fields that `picks` names (not None) set to existing ids, in path, query and body."""
    for name, value in picks.items():
        if value is None:
            continue
        for part in (case.path_parameters, case.query, case.body):
            if isinstance(part, dict) and name in part:
                part[name] = value
    return case


def fuzz_operation(operation: Any, mode: GenerationMode, headers: dict[str, str], ids: st.SearchStrategy[Any],
                   max_examples: int) -> list[int]:
    """Run one operation's cases (schemathesis's checks, then the role table's); returns the statuses seen."""
    statuses: list[int] = []

    @given(case=st.tuples(operation.as_strategy(generation_mode=mode), ids).map(lambda p: with_known_ids(*p)))
    # too_slow: each example is a real request through the app to SQLite, and four other test runs share the two
    # cores; the speed of the data generation is not what this test is about. filter_too_much: negative generation
    # for a tightly constrained operation sometimes discards most of what it draws, on whichever operation a seed
    # picks (schemathesis#4391); that is Hypothesis judging its own generation, not the hub, and likely what failed this
    # module once in a large run. Every other health check stays on.
    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses.append(response.status_code)
        refusal = expected_refusal(operation.label, response)
        sent = response.request.headers.get("Authorization")
        if refusal is None:
            assert response.status_code not in (401, 403), f"{sent!r} was refused: {response.text[:300]}"
        else:
            assert response.status_code in refusal, f"{sent!r} got {response.status_code}, not one of " \
                                                    f"{sorted(refusal)}: {response.text[:300]}"

    try:
        check()
    except Unsatisfiable:  # nothing to get wrong: an operation without parameters has no negative input
        assert mode is GenerationMode.NEGATIVE, operation.label
    return statuses


def fuzz(populated: Populated, role: Role, mode: GenerationMode) -> dict[str, list[int]]:
    """Every operation with `role`'s token; returns the statuses seen per operation. Failures are collected over
    all operations, then reported together."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", populated.hub.app)
    headers = {} if role is None else {"Authorization": f"Bearer {TOKEN[role]}"}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 30
    ids = st.fixed_dictionaries({name: st.none() | st.sampled_from(values) for name, values in populated.known.items()})
    failures: list[str] = []
    seen: dict[str, list[int]] = {}
    for operation in operations:
        try:
            seen[operation.label] = fuzz_operation(operation, mode, headers, ids, MAX_EXAMPLES[role])
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label} as {role}: {exc}")
    assert not failures, "\n\n".join(failures)
    return seen


CASES = [(role, mode) for role in ROLES for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]


@pytest.mark.parametrize(("role", "mode"), CASES, ids=[f"{r or 'no-token'}-{m.value}" for r, m in CASES])
def test_no_server_errors_and_roles_hold(populated: Populated, role: Role, mode: GenerationMode) -> None:
    path = populated.hub.store.path
    before = snapshot(path)
    seen = fuzz(populated, role, mode)
    changed = {t for t, digest in snapshot(path).items() if before.get(t) != digest}
    if role in (None, "viewer"):
        assert not changed, f"{role or 'no token'} changed {changed}"
    elif role == "technician":
        assert changed <= TECHNICIAN_WRITES, changed
    if role == "operator" and mode is GenerationMode.POSITIVE:  # the fuzz reached the populated data
        assert 200 in seen["GET /rollouts/{rollout_id}"] and 200 in seen["GET /models/{version}"]
        assert 200 in seen["GET /labels/sets/{label_set_id}"] and 200 in seen["GET /traces/{trace_id}"]
