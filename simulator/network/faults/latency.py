"""Latency: a delay before each request, normally distributed around a mean and cut off at zero."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register


@register("latency")
@dataclass(frozen=True, slots=True)
class Latency:
    """Round-trip delay added before each request.

    mean_ms: mean delay in milliseconds (>= 0).
    jitter_ms: standard deviation in milliseconds (>= 0); 0 means every delay is exactly the mean.
    """

    mean_ms: float
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.mean_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"latency needs mean_ms >= 0 and jitter_ms >= 0, got {self}")

    def delay_s(self, rng: np.random.Generator) -> float:
        """One delay in seconds, never negative (draws below zero become zero).

        Draws from `rng` only when jitter_ms > 0, so a fixed latency does not consume random numbers.
        """
        if self.jitter_ms == 0:
            return self.mean_ms / 1000
        return max(0.0, float(rng.normal(self.mean_ms, self.jitter_ms))) / 1000
