"""Frames and positions that arrive separately, joined by the detector's trigger count (streaming).

A detector streams frames, each with its trigger count (areaDetector's ``uniqueId``); the scan streams positions
in chunks, each position with the trigger count it belongs to. They arrive in any order, some twice, some never.
:class:`Joiner` pairs a frame only with the position of its own trigger count, never guesses, and counts what it
could not pair. Pure Python and NumPy: the transport (PV Access, ``io.pva``) feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Joined:
    """One pattern with its position: ``trigger`` (int), ``frame`` (N, N) as received, ``x``/``y`` (metres)."""

    trigger: int
    frame: np.ndarray
    x: float
    y: float


@dataclass
class Joiner:
    """Pairs frames and positions by trigger count.

    ``add_frame(trigger, frame)`` and ``add_positions(triggers, xs, ys)`` return the newly joined items. A second
    frame (or position) for a trigger count already seen is a duplicate: counted and dropped, and, if its content
    differs from the first, counted as a conflict as well (the first one stays: a pairing is never changed once
    made). ``closed``: after the scan has ended, further items are counted as late and dropped.
    """

    joined: dict = field(default_factory=dict)
    """trigger -> Joined."""
    frames: dict = field(default_factory=dict)
    """Frames waiting for their position: trigger -> frame."""
    positions: dict = field(default_factory=dict)
    """Positions waiting for their frame: trigger -> (x, y)."""
    counts: dict = field(default_factory=lambda: dict.fromkeys(
        ("frames", "positions", "duplicate_frames", "duplicate_positions", "conflicts", "late"), 0))
    closed: bool = False
    fresh: list = field(default_factory=list)
    """Joined items not yet taken (:meth:`take`), in the order they were joined."""

    def add_frame(self, trigger: int, frame) -> list:
        trigger = int(trigger)
        self.counts["frames"] += 1
        if self.closed:
            self.counts["late"] += 1
            return []
        earlier = self.joined[trigger].frame if trigger in self.joined else self.frames.get(trigger)
        if earlier is not None:
            self.counts["duplicate_frames"] += 1
            self.counts["conflicts"] += int(not np.array_equal(earlier, frame))
            return []
        if trigger in self.positions:
            x, y = self.positions.pop(trigger)
            return [self._join(trigger, frame, x, y)]
        self.frames[trigger] = np.array(frame, copy=True)
        return []

    def add_positions(self, triggers, xs, ys) -> list:
        out = []
        for trigger, x, y in zip(np.asarray(triggers).tolist(), np.asarray(xs, float).tolist(),
                                 np.asarray(ys, float).tolist()):
            trigger = int(trigger)
            self.counts["positions"] += 1
            if self.closed:
                self.counts["late"] += 1
                continue
            earlier = ((self.joined[trigger].x, self.joined[trigger].y) if trigger in self.joined
                       else self.positions.get(trigger))
            if earlier is not None:
                self.counts["duplicate_positions"] += 1
                self.counts["conflicts"] += int(earlier != (x, y))
                continue
            if trigger in self.frames:
                out.append(self._join(trigger, self.frames.pop(trigger), x, y))
            else:
                self.positions[trigger] = (x, y)
        return out

    def _join(self, trigger, frame, x, y) -> Joined:
        item = Joined(trigger, np.array(frame, copy=True), x, y)
        self.joined[trigger] = item
        self.fresh.append(item)
        return item

    def take(self) -> list:
        """The items joined since the last call."""
        out, self.fresh = self.fresh, []
        return out

    def close(self) -> None:
        """The scan has ended: nothing more joins."""
        self.closed = True

    def report(self, expected: int | None = None) -> dict:
        """Counts, the trigger counts left without a partner, and (given the expected number of frames, trigger
        counts 1..expected) those that never arrived at all."""
        out = dict(self.counts, joined=len(self.joined), frames_without_position=sorted(self.frames),
                   positions_without_frame=sorted(self.positions))
        if expected is not None:
            seen = set(self.joined) | set(self.frames) | set(self.positions)
            out["never_arrived"] = sorted(set(range(1, expected + 1)) - seen)
        return out

    def scan(self):
        """(triggers (POSI,), frames (POSI, N, N), x (POSI,), y (POSI,)) of everything joined, by trigger count."""
        keys = sorted(self.joined)
        items = [self.joined[k] for k in keys]
        frames = np.stack([i.frame for i in items]) if items else np.zeros((0, 0, 0))
        return (np.asarray(keys), frames, np.array([i.x for i in items]), np.array([i.y for i in items]))
