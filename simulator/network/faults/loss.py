"""Loss: the chance that a request fails with a network error before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register


@register("loss")
@dataclass(frozen=True, slots=True)
class Loss:
    """probability: chance in [0, 1] that one request is lost (0 never, 1 always)."""

    probability: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"loss probability must be in [0, 1], got {self.probability}")

    def fails(self, rng: np.random.Generator) -> bool:
        """Whether this request is lost. Draws from `rng` only when 0 < probability < 1."""
        if self.probability in (0.0, 1.0):
            return self.probability == 1.0
        return bool(rng.random() < self.probability)
