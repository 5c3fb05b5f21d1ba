"""Row and file ids: version-4 GUIDs drawn from a seeded generator (so runs are reproducible)."""

from __future__ import annotations

import numpy as np


def new_guids(rng: np.random.Generator, n: int) -> list[str]:
    """`n` version-4 UUID strings (lowercase, hyphenated) from the generator, formatted in bulk."""
    if n <= 0:
        return []
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, 0:8], out[:, 9:13], out[:, 14:18] = digits[:, 0:8], digits[:, 8:12], digits[:, 12:16]
    out[:, 19:23], out[:, 24:36] = digits[:, 16:20], digits[:, 20:32]
    return ascii_rows(out)


def ascii_rows(chars: np.ndarray) -> list[str]:
    """Each row of an (n, width) array of ASCII codes as a str."""
    width = chars.shape[1]
    text = np.ascontiguousarray(chars).tobytes().decode("ascii")
    return [text[i : i + width] for i in range(0, len(text), width)]


def new_guid(rng: np.random.Generator) -> str:
    """One version-4 UUID string (lowercase, hyphenated) from the generator."""
    return new_guids(rng, 1)[0]
