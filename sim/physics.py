"""Sensor physics of a simulated rotating machine: how load, wear and noise become readings (numpy only).

Wear runs from 0 (new) to 1 (failed). It raises vibration, temperature and current, and lowers pressure,
flow and speed, each through a per-life gain so that no single sensor tells the whole story.
"""

from __future__ import annotations

import numpy as np

SENSORS: tuple[str, ...] = ("temperature", "vibration", "pressure", "flow", "current", "rpm")
UNITS: tuple[str, ...] = ("degC", "mm/s", "bar", "m3/h", "A", "rpm")

# Load level (fraction of rated load) of each operating regime a machine may switch between.
REGIME_LOADS: tuple[float, ...] = (0.6, 1.0, 1.3)

# Baseline scale of each sensor, per asset type (in SENSORS order).
ASSET_PROFILES: dict[str, tuple[float, ...]] = {
    "pump": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "compressor": (1.15, 1.2, 2.0, 0.6, 1.4, 1.2),
    "fan": (0.9, 0.8, 0.3, 2.5, 0.6, 0.8),
}

# Noise standard deviation of each sensor at noise level 1, before the asset's scale.
NOISE_STD = np.array([0.7, 0.25, 0.08, 1.2, 0.5, 6.0])

# Spread of each machine's own calibration around its asset profile (rpm is held by the drive).
CALIBRATION_SPREAD = np.array([0.02, 0.03, 0.02, 0.02, 0.02, 0.005])

# Share of wear that accrues linearly over a life; the rest arrives in the final exponential collapse.
LINEAR_WEAR = 0.2


def wear_curve(length: int, tau: float) -> np.ndarray:
    """Wear over a life of `length` steps: 0 at the first step, exactly 1 at the last (the failure).

    Mostly flat, then an exponential collapse with time constant `tau` steps, so the wear at a given
    remaining life is about ``exp(-rul / tau)`` whatever the life's length.
    """
    last = length - 1
    i = np.arange(length, dtype=np.float64)
    floor = np.exp(-last / tau)
    collapse = (np.exp((i - last) / tau) - floor) / (1.0 - floor)
    wear = LINEAR_WEAR * (i / last) + (1.0 - LINEAR_WEAR) * collapse
    wear[-1] = 1.0
    return np.clip(wear, 0.0, 1.0)


def render(
    load: np.ndarray,
    wear: np.ndarray,
    gains: np.ndarray,
    z: np.ndarray,
    *,
    scale: np.ndarray,
    ambient_c: float,
    noise: float,
) -> np.ndarray:
    """Readings ``(n, len(SENSORS))`` from load ``(n,)``, wear ``(n,)``, gains ``(n, 3)`` and noise ``(n, 6)``.

    `gains` are the mechanical, thermal and hydraulic sensitivities of the current life; `scale` is the
    asset profile times the machine's own calibration.
    """
    mech, therm, hydr = gains[:, 0], gains[:, 1], gains[:, 2]
    sd = noise * NOISE_STD * scale
    out = np.empty((load.shape[0], len(SENSORS)), dtype=np.float64)
    out[:, 0] = ambient_c + scale[0] * (20.0 + 25.0 * load) + 18.0 * therm * wear + sd[0] * z[:, 0]
    out[:, 1] = (
        scale[1] * (0.8 + 1.2 * load)
        + 4.0 * mech * wear * (0.5 + 0.5 * load)
        + sd[1] * (1.0 + 1.5 * wear) * z[:, 1]
    )
    out[:, 2] = scale[2] * (1.5 + 4.0 * load) * (1.0 - 0.12 * hydr * wear) + sd[2] * z[:, 2]
    out[:, 3] = scale[3] * (15.0 + 45.0 * load) * (1.0 - 0.2 * hydr * wear) + sd[3] * z[:, 3]
    out[:, 4] = scale[4] * (8.0 + 22.0 * load) * (1.0 + 0.12 * therm * wear) + sd[4] * z[:, 4]
    out[:, 5] = scale[5] * (800.0 + 700.0 * load) - 40.0 * mech * wear + sd[5] * z[:, 5]
    return out
