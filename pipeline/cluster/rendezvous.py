"""Who should own each camera: weighted rendezvous (highest-random-weight) hashing with a per-worker cap.

Every worker computes the same answer from the same inputs (the camera ids and the live workers with
their capacities), with no coordination: each (camera, worker) pair gets a pseudo-random number
``u`` in (0, 1) from a hash of both ids, and the score ``-capacity / ln(u)``; a camera's preferred
owner is the worker with the highest score.  With that score a worker's share of the cameras is
proportional to its capacity (the logarithmic method of weighted rendezvous hashing), and because a
pair's score does not depend on the other workers:

- a worker joining takes from each other worker only the cameras it now scores highest on, about
  ``capacity / total capacity`` of them, and nothing else moves;
- a worker leaving gives up only its own cameras, each to its second choice.

A cap (``max_cameras``) is applied by handing the cameras out in a fixed order (by their own hash)
to their best-ranked worker with room left: while no cap binds, this is exactly the plain hash.

Pure functions on numpy arrays: no Redis, no clock (tests/unit/cluster/test_cluster_rendezvous.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Member:
    """A live worker as the hash sees it."""

    id: str
    capacity: float = 1.0
    max_cameras: int | None = None


def hash64(text: str) -> int:
    """A stable 64-bit hash of a string (the same in every process and on every machine)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit flips about half the output bits."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _hashes(ids: Sequence[str]) -> np.ndarray:
    return np.array([hash64(i) for i in ids], dtype=np.uint64)


def scores(cameras: Sequence[str], members: Sequence[Member]) -> np.ndarray:
    """``[len(cameras), len(members)]`` rendezvous scores; higher wins."""
    if not len(cameras) or not len(members):
        return np.zeros((len(cameras), len(members)))
    c = _hashes(cameras)[:, None]
    w = _hashes([m.id for m in members])[None, :]
    with np.errstate(over="ignore"):
        x = _mix(c ^ (w * _GOLDEN + np.uint64(1)))
    u = ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # in (0, 1), never 0 or 1
    weight = np.array([m.capacity for m in members], dtype=np.float64)[None, :]
    return -weight / np.log(u)


def preferences(cameras: Sequence[str], members: Sequence[Member]) -> np.ndarray:
    """``[C, W]`` member indices, each row best first (ties broken by member order)."""
    return np.argsort(-scores(cameras, members), axis=1, kind="stable")


@dataclass
class Assignment:
    """The hash's answer for one set of cameras and members."""

    cameras: list[str]
    members: list[Member]
    order: np.ndarray  # [C, W] member indices, best first, before caps
    owner: dict[str, str | None]  # preferred owner after caps (None: every worker is full)

    def rank(self, camera: str, member_id: str) -> int | None:
        """0 for a camera's first choice, 1 for its second ...; None when ``member_id`` is not live."""
        ids = [m.id for m in self.members]
        if member_id not in ids or camera not in self._row:
            return None
        row = self.order[self._row[camera]]
        return int(np.nonzero(row == ids.index(member_id))[0][0])

    def __post_init__(self) -> None:
        self._row = {c: i for i, c in enumerate(self.cameras)}


def assign(cameras: Sequence[str], members: Sequence[Member]) -> Assignment:
    """Preferred owner of every camera, honouring each member's ``max_cameras``."""
    cams = sorted(set(cameras))
    mems = sorted({m.id: m for m in members}.values(), key=lambda m: m.id)
    order = preferences(cams, mems)
    owner: dict[str, str | None] = {}
    if not mems:
        return Assignment(cams, mems, order, dict.fromkeys(cams))
    if all(m.max_cameras is None for m in mems):
        first = order[:, 0] if len(cams) else np.zeros(0, dtype=int)
        owner = {c: mems[int(i)].id for c, i in zip(cams, first)}
        return Assignment(cams, mems, order, owner)
    room = [m.max_cameras if m.max_cameras is not None else len(cams) for m in mems]
    # a fixed order (the camera's own hash), so a camera's place in the queue never depends on the members
    for ci in sorted(range(len(cams)), key=lambda i: hash64("order:" + cams[i])):
        chosen = None
        for wi in order[ci]:
            if room[wi] > 0:
                room[wi] -= 1
                chosen = mems[int(wi)].id
                break
        owner[cams[ci]] = chosen
    return Assignment(cams, mems, order, owner)


def moved(before: dict[str, str | None], after: dict[str, str | None]) -> list[str]:
    """Cameras whose preferred owner differs between two assignments."""
    return sorted(c for c in set(before) | set(after) if before.get(c) != after.get(c))
