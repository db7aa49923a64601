"""Which windows go to the hub besides anomalies: a random baseline slice and rate-limited low-confidence ones.

The random slice draws every window with the same probability, anomalies included, so the hub's slice is
unbiased; windows close to the threshold are sent through a token bucket (at most N a minute).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Literal

SampleReason = Literal["random", "low_confidence"]


class Sampler:
    """Draws the sample reason of each scored window; seeded per device so a replay samples the same windows."""

    def __init__(self, rate: float, low_confidence_per_min: int, seed: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.low_confidence_per_min = low_confidence_per_min
        self._rng = random.Random(seed)
        self._clock = clock
        self._tokens = float(low_confidence_per_min)
        self._tokens_at = clock()

    def reason(self, score: float, anomaly: bool, threshold: float, margin: float) -> SampleReason | None:
        """Why this window goes to the hub besides being an anomaly: drawn into the random baseline slice
        (every window with the same probability, anomalies included, so the slice is unbiased), or within
        `margin` of `threshold` (rate-limited)."""
        if self._rng.random() < self.rate:
            return "random"
        if anomaly:
            return None
        if abs(score - threshold) <= margin:
            clock = self._clock()
            cap = float(self.low_confidence_per_min)
            self._tokens = min(cap, self._tokens + (clock - self._tokens_at) * cap / 60.0)
            self._tokens_at = clock
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return "low_confidence"
        return None
