"""Models: the registry with each version's status, its gate report in words (every check, its numbers and
interval), lineage and data fingerprint, and the audit trail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from hub.api.deps import RegistryDep
from hub.api.schemas.models import VERSION_PATTERN
from hub.console.deps import ConsoleDep, ConsoleError, Viewer, render
from hub.gate.summary import gate_summary

router = APIRouter()

Version = Annotated[str, Path(min_length=1, max_length=128, pattern=VERSION_PATTERN)]
GATE_WORDS = {
    "pass": "The gate passed it: it may replace the active version.",
    "fail": "The gate rejected it: it is worse than the active version on the evaluation slice.",
    "insufficient_data": "The gate could not judge it: too few labelled windows on the evaluation slice.",
    "skipped": "The gate was skipped by an operator (audited): it was rolled out unjudged.",
}


def gate_words(gate: dict[str, Any] | None) -> str:
    """The gate's verdict as one sentence."""
    if not gate:
        return "No gate decision (registered directly, e.g. the first version)."
    verdict = str(gate.get("verdict"))
    return GATE_WORDS.get(verdict, f"Gate verdict: {verdict}.")


@router.get("/models")
def models_page(request: Request, session: Viewer, console: ConsoleDep, registry: RegistryDep) -> HTMLResponse:
    rows = registry.store.model_versions(limit=200)
    return render(request, console, "models.html", session, models=rows,
                  verdicts={r.version: (r.gate or {}).get("verdict") for r in rows})


@router.get("/models/{version}")
def model_page(request: Request, version: Version, session: Viewer, console: ConsoleDep,
               registry: RegistryDep) -> HTMLResponse:
    row = registry.store.model_version(version)
    if row is None:
        raise ConsoleError(404, f"no model version {version} in the registry")
    checks = [c for c in (row.gate or {}).get("checks", []) if isinstance(c, dict)]
    return render(request, console, "model.html", session, m=row, words=gate_words(row.gate), checks=checks,
                  summary=gate_summary(row.gate, status=row.status), training=row.manifest.get("training", {}),
                  audit=registry.store.model_audit(version=version, limit=1000))
