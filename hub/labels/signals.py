"""Signal quality: how much one annotation of each kind counts, and which kinds may ever train a model.

The weights form a ladder with ratio 0.4 between rungs (``confirmed`` and ``correction`` share the top):

=============  ======  ===========================================================================
signal         weight  why
=============  ======  ===========================================================================
confirmed      1.0     a technician inspected the machine and confirmed the fault (or its absence)
correction     1.0     a technician inspected and corrected the model's verdict: equally explicit
escalation     0.4     the alert was passed up for a closer look: intent, but no verdict yet
rating         0.16    a graded opinion on the alert, given without necessarily inspecting
thumbs         0.064   a one-click reaction to the alert: cheap, noisy, shaped by alert fatigue
implicit       0.0256  inferred from behaviour (alert dismissed, ticket closed): the weakest evidence
=============  ======  ===========================================================================

Why 0.4: at the default agreement threshold of 0.7 a vote outweighs **one** dissenting vote from the
rung below (``1 / 1.4 ≈ 0.714 ≥ 0.7``) but not **two** (``1 / 1.8 ≈ 0.556``), so a single escalation
cannot overturn an inspection, yet a pair of independent escalations turns it into a surfaced conflict.

Thumbs and implicit signals are never trainable (DESIGN.md, "Feedback quality"): they are counted and
reported, but `hub.labels.validate` never lets them vote or enter a label set, whatever the caller asks.

>>> signal_weight("escalation") / signal_weight("confirmed")
0.4
>>> sorted(UNTRAINABLE_SIGNALS)
['implicit', 'thumbs']
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import Final, get_args

from shared.messages import Signal

SIGNALS: Final[tuple[Signal, ...]] = get_args(Signal)
"""Every signal kind, best signal-to-noise first."""

SIGNAL_WEIGHTS: Final = MappingProxyType(
    {
        "confirmed": 1.0,
        "correction": 1.0,
        "escalation": 0.4,
        "rating": 0.16,
        "thumbs": 0.064,
        "implicit": 0.0256,
    }
)
"""Quality weight of one annotation of each signal kind (read-only)."""

UNTRAINABLE_SIGNALS: Final[frozenset[Signal]] = frozenset({"thumbs", "implicit"})
"""Kinds that are reported but never used for training."""

TRAINABLE_SIGNALS: Final[frozenset[Signal]] = frozenset(s for s in SIGNALS if s not in UNTRAINABLE_SIGNALS)
"""The default (and the widest allowed) set of kinds a label set may be built from."""


def signal_weight(signal: Signal) -> float:
    """Quality weight of one annotation of kind `signal`, in (0, 1].

    >>> signal_weight("confirmed"), signal_weight("thumbs")
    (1.0, 0.064)
    """
    try:
        return SIGNAL_WEIGHTS[signal]
    except KeyError:
        raise ValueError(f"unknown signal {signal!r}; expected one of {', '.join(SIGNALS)}") from None


def trainable_signals(signals: Iterable[str]) -> frozenset[Signal]:
    """The caller's choice of trainable kinds, checked: unknown kinds and thumbs-style kinds are refused.

    >>> sorted(trainable_signals(["confirmed", "correction"]))
    ['confirmed', 'correction']
    >>> trainable_signals(["thumbs"])
    Traceback (most recent call last):
    ...
    ValueError: thumbs is never trainable; it can only be reported
    """
    chosen: set[Signal] = set()
    for signal in signals:
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; expected one of {', '.join(SIGNALS)}")
        if signal in UNTRAINABLE_SIGNALS:
            raise ValueError(f"{signal} is never trainable; it can only be reported")
        chosen.add(signal)
    return frozenset(chosen)
