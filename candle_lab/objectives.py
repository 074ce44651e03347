"""Built-in objectives with known optima: for tests, benchmarks and first steps.

Each takes the trial's parameter dict, like any candle_lab model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

BRANIN_MIN = 0.397887357729739
HARTMANN6_MIN = -3.322368011415515

_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def branin(params: Mapping[str, Any]) -> float:
    """Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887 (three places)."""
    x1, x2 = float(params["x1"]), float(params["x2"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(params: Mapping[str, Any]) -> float:
    """Hartmann 6-D on [0, 1]^6 (x1..x6); minimum -3.32237."""
    x = np.array([float(params[f"x{i}"]) for i in range(1, 7)])
    inner = (_H6_A * (x - _H6_P) ** 2).sum(axis=1)
    return float(-(_H6_ALPHA * np.exp(-inner)).sum())


BRANIN_SPACE = [
    {"name": "x1", "type": "real", "low": -5.0, "high": 10.0},
    {"name": "x2", "type": "real", "low": 0.0, "high": 15.0},
]
HARTMANN6_SPACE = [{"name": f"x{i}", "type": "real", "low": 0.0, "high": 1.0} for i in range(1, 7)]


def noop(params: Mapping[str, Any]) -> float:
    """Returns at once: measures the platform's own cost per trial."""
    return 0.0


def sleepy(params: Mapping[str, Any]) -> dict[str, float]:
    """Sleeps ``params['seconds']`` (default 0.2 s), then returns a quadratic of ``x``."""
    time.sleep(float(params.get("seconds", 0.2)))
    x = float(params.get("x", 0.0))
    return {"val_loss": (x - 0.3) ** 2, "seconds": float(params.get("seconds", 0.2))}


ZDT_SPACE = HARTMANN6_SPACE  # x1..x6 in [0, 1]


def zdt1(params: Mapping[str, Any]) -> dict[str, float]:
    """ZDT1 (two objectives, both minimised) on [0, 1]^6: a convex front f2 = 1 - sqrt(f1)
    where x2..x6 = 0."""
    x = np.array([float(params[f"x{i}"]) for i in range(1, 7)])
    g = 1.0 + 9.0 * float(x[1:].mean())
    return {"f1": float(x[0]), "f2": g * (1.0 - math.sqrt(x[0] / g))}


def zdt2(params: Mapping[str, Any]) -> dict[str, float]:
    """ZDT2 on [0, 1]^6: a concave front f2 = 1 - f1² where x2..x6 = 0."""
    x = np.array([float(params[f"x{i}"]) for i in range(1, 7)])
    g = 1.0 + 9.0 * float(x[1:].mean())
    return {"f1": float(x[0]), "f2": g * (1.0 - (x[0] / g) ** 2)}
