"""The loop's last resort: an exception from one reading or one step is counted and logged, never fatal.

Not a silent swallow: the first exception of each kind (type and the line it came from) is logged with its
traceback, so a programming error is visible at once; repeats are counted and logged every `every`-th time.
"""

from __future__ import annotations

import logging
import traceback


class ErrorTally:
    """Counts exceptions per kind and logs them: the first with its traceback, then every `every`-th."""

    def __init__(self, logger: logging.Logger, every: int = 1000) -> None:
        self.log = logger
        self.every = every
        self.kinds: dict[str, int] = {}
        self.total = 0

    def record(self, what: str, exc: BaseException) -> None:
        key = f"{what}: {type(exc).__name__} at {_origin(exc)}"
        n = self.kinds[key] = self.kinds.get(key, 0) + 1
        self.total += 1
        if n == 1:
            self.log.error("%s failed and was skipped (%s): %s; further ones of this kind are counted and logged "
                           "every %d", what, key, exc, self.every, exc_info=exc)
        elif n % self.every == 0:
            self.log.error("%s failed %d times (%s); latest: %s", what, n, key, exc)


def _origin(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
