"""``/dead-letters``: the messages ingest refused (malformed, oversized, wrong topic, …), newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import AUTH_RESPONSES, Reader, StoreDep
from hub.api.schemas.deadletters import DeadLetterPublic

router = APIRouter(prefix="/dead-letters", tags=["dead-letters"], responses=AUTH_RESPONSES)


@router.get("", summary="Refused messages (newest first)")
def list_dead_letters(
    _: Reader,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    reason: Annotated[str | None, Query(max_length=64, description="only this reason, e.g. bad_json")] = None,
) -> list[DeadLetterPublic]:
    return [DeadLetterPublic.from_row(r) for r in store.dead_letters(limit=limit, reason=reason)]


@router.get("/counts", summary="Refused messages by reason (all kept rows)")
def count_dead_letters(_: Reader, store: StoreDep) -> dict[str, int]:
    return store.dead_letter_counts()
