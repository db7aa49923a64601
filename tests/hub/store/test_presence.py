"""The presence ordering rule (pure): its documented examples run."""

from __future__ import annotations

import doctest

from hub.store import presence


def test_docstring_examples_run() -> None:
    result = doctest.testmod(presence)
    assert result.attempted > 0 and result.failed == 0
