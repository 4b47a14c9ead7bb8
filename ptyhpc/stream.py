"""Reconstruct while the scan runs: the joined frames and positions are a growing source of patterns, and the
usual engine runs epochs over what has arrived.

Rank 0 receives (``io.pva.Receiver``) and, at every epoch boundary, broadcasts what joined since the last one;
every rank keeps the joined scan in memory (frames as the detector gave them). Or (``distributed``) pvapy's data
distributor deals the frames to all ranks in turn, each gathers its share to rank 0 at every epoch boundary, and
rank 0 joins and broadcasts as before (duplicates and conflicts are seen in one place). When the scan has grown enough
(``GROWTH``) the reconstruction is set up afresh over all positions so far (a new partition: the object grows
where they land), starting from the previous object (placed on the new grid by the positions the two share)
and probe; otherwise one more epoch runs over the current positions. Rank 0 publishes a preview after every
epoch at most every ``preview_every`` seconds. When the scan ends, the final epochs run over everything.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .backend import asnumpy
from .comm import Ranks
from .config import ReconConfig
from .engine import Reconstruction
from .io.dataset import from_arrays
from .units import wavelength_from_ev

GROWTH = 1.25
"""Set the reconstruction up afresh when the joined positions have grown by this factor since the last set-up."""
FIRST = 16
"""Positions joined before the first epoch runs."""


class Rows:
    """Frames held as they arrived (a list of arrays: no copy of the scan as it grows) seen in another order:
    ``shape``, ``dtype`` and rows by index or slice, as ``io.dataset.from_arrays`` and ``io.cxi.write`` read them
    (block by block). Rank 0's joiner and ``Live`` share the same arrays, so each rank holds the scan once."""

    def __init__(self, frames: list, order):
        self.frames, self.order = frames, np.asarray(order, dtype=np.int64)
        first = frames[self.order[0]] if len(self.order) else np.zeros((0, 0), np.float32)
        self.shape, self.dtype = (len(self.order),) + first.shape, first.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        picked = self.order[rows]
        if not len(picked):
            return np.empty((0,) + self.shape[1:], self.dtype)
        return np.stack([self.frames[i] for i in picked])  # every frame of the scan has the first's shape and type


class Live:
    """The growing scan and its reconstruction on the ranks of ``comm`` (``comm.Ranks``, an mpi4py communicator or
    None; every rank makes one)."""

    def __init__(self, cfg: ReconConfig, comm, energy_ev: float, distance: float, detector_pixel: float,
                 probe=None, log=None):
        self.cfg, self.comm, self.log = cfg, Ranks.of(comm), log or (lambda m: None)
        self.geometry = (wavelength_from_ev(energy_ev), distance, detector_pixel)
        self.frames, self.x, self.y, self.triggers = [], [], [], []
        self.rec, self.built_triggers, self.epochs_run = None, np.zeros(0, np.int64), 0
        """built_triggers: the trigger counts of the positions the current reconstruction was set up with."""
        self.probe0 = probe

    def add(self, items) -> None:
        for trigger, frame, x, y in items:
            if self.frames and (frame.shape != self.frames[0].shape or frame.dtype != self.frames[0].dtype):
                raise ValueError(f"frames channel: the frame of trigger count {trigger} is {frame.shape} {frame.dtype}, "
                                 f"the scan's are {self.frames[0].shape} {self.frames[0].dtype}")
            self.triggers.append(trigger)
            self.frames.append(frame)
            self.x.append(x)
            self.y.append(y)

    def dataset(self):
        """The joined scan so far as a Dataset, in trigger order (frames centred, as received; positions metres ->
        corners), and its trigger counts."""
        wavelength, distance, pixel_d = self.geometry
        order = np.argsort(self.triggers, kind="stable")
        frames = Rows(self.frames, order)
        n = frames.shape[-1]
        pixel = wavelength * distance / (n * pixel_d)
        corners = np.stack([np.asarray(self.y)[order], np.asarray(self.x)[order]], axis=1) / pixel - n / 2
        d = from_arrays(frames, corners, pixel_size=pixel, name="<stream>")
        d = replace(d, centred=True, wavelength=wavelength, distance=distance, detector_pixel=pixel_d)
        return d, np.asarray(self.triggers)[order]

    def step(self, final: bool = False) -> None:
        """One epoch, after setting up afresh when the scan has grown enough. While the scan runs the probe stays
        as it started (refined from a partial, unevenly covered scan it was seen to drift and leave the final
        epochs a worse start than a flat object); ``final``: set up over everything with the settings as given."""
        count = len(self.frames)
        if count < FIRST and not final:
            return
        if final or self.rec is None or count >= GROWTH * len(self.built_triggers):
            self._build(self.cfg if final else replace(self.cfg, update_probe=False))
        self.rec.iterate(1)
        self.epochs_run += 1

    def _build(self, cfg) -> None:
        d, triggers = self.dataset()
        probe, obj = self.probe0, None
        if self.rec is not None:
            probe = asnumpy(self.rec.state.probe)
            old = self.rec.gather_object()
            old = self.comm.bcast(old)
            shared = np.searchsorted(triggers, self.built_triggers)  # the old positions among the new ones
            shift = np.round(np.median(d.scan[shared] - self.rec.dataset.scan, axis=0)).astype(int)
            obj = np.ones(d.object_shape, dtype=np.complex64)
            (dy, dx), (h, w) = shift, old.shape
            obj[dy:dy + h, dx:dx + w] = old  # the new grid holds the old one: positions only ever add
            self.rec = old = None  # its patterns (a float32 copy of this rank's frames) go before the new ones come
        self.rec = Reconstruction(d, cfg, self.comm, probe=probe, obj=obj, log=self.log)
        self.log(f"stream: {d.count} positions, object {d.object_shape[0]}x{d.object_shape[1]}")
        self.built_triggers = triggers


@dataclass
class Schedule:
    """When a stream's scan is over and what is written while it runs (``ptyhpc stream``'s options).

    expected : joined frames after which the scan is over (None: not known; then the end marker or quiet)
    quiet : seconds without data after the scan's end marker that end it
    timeout : seconds within which the first frame and position must come (else TimeoutError naming the
        channel), and seconds without any data that end a scan that sent no end marker
    final_epochs : epochs over the whole scan once it is over
    preview_every : seconds between previews at most
    snapshot : path of the product written (atomically) while the scan runs, every ``snapshot_every`` seconds
        (None or 0 s: none)
    poll : seconds to wait for frames when there is nothing new to iterate over
    """

    expected: int | None = None
    quiet: float = 2.0
    timeout: float = 30.0
    final_epochs: int = 50
    preview_every: float = 1.0
    snapshot: str | None = None
    snapshot_every: float = 0.0
    poll: float = 0.05


@dataclass
class Sources:
    """Where one rank's frames come from and where its previews go.

    receiver : ``io.pva.Receiver`` on rank 0 (None elsewhere): frames and positions joined
    preview : ``io.pva.Preview`` on rank 0 (None elsewhere, or without previews)
    previewing : whether there is a preview (every rank: gathering the object for it is collective)
    distributed : whether pvapy's data distributor deals the frames to every rank (every rank), each rank but 0
        receiving its share through ``share`` (``io.pva.Share``), gathered to rank 0 at every step
    stop : true on rank 0 when the scan must end at once (a signal was caught): one final epoch over what came
    """

    receiver: object = None
    preview: object = None
    previewing: bool = False
    distributed: bool = False
    share: object = None
    stop: Callable[[], bool] = lambda: False


def run(live: Live, sources: Sources, schedule: Schedule) -> dict:
    """Drive ``live`` until the scan ends, then its final epochs (collective: every rank calls it with its own
    ``sources`` and the same ``schedule``). One broadcast per step carries what joined, whether the scan is over and
    whether a preview or snapshot is due. Returns timings (seconds from the first frame), why the scan ended and
    the snapshots written."""
    receiver, preview = sources.receiver, sources.preview
    comm = live.comm
    rank = comm.rank
    timings, why, snapshots = {}, None, 0
    last = {"preview": -np.inf, "snapshot": time.monotonic()}
    """When rank 0 last published a preview and wrote a snapshot."""
    handed = np.zeros(comm.size, dtype=np.int64)
    """Frames each rank received from the distributor and handed to rank 0 (rank 0's own: ``receiver.own``)."""
    while True:
        if sources.distributed:
            parts = comm.gather(sources.share.take() if sources.share is not None else [])
            if rank == 0:
                handed += [len(part) for part in parts]
                receiver.add_frames([f for part in parts for f in part])
        message = None
        if rank == 0:
            now = time.monotonic()
            due = (sources.previewing and now - last["preview"] >= schedule.preview_every,
                   bool(schedule.snapshot) and schedule.snapshot_every > 0
                   and now - last["snapshot"] >= schedule.snapshot_every)
            try:
                why = "signal" if sources.stop() else receiver.status(schedule.expected, schedule.quiet,
                                                                      schedule.timeout)
                message = ("ok", [(i.trigger, i.frame, i.x, i.y) for i in receiver.take()], why, due)
            except (TimeoutError, ValueError) as e:  # raised on every rank, after the broadcast
                message = ("error", e, None, None)
        message = comm.bcast(message)
        if message[0] == "error":
            raise message[1]
        _, items, why, (publish, snap) = message
        live.add(items)
        if why:
            break
        before = live.epochs_run
        live.step()
        if live.epochs_run == before:
            time.sleep(schedule.poll)
            continue
        if publish:
            obj = live.rec.gather_object()  # collective: every rank sends its core
            if rank == 0:
                preview.publish(obj, asnumpy(live.rec.state.probe), live.rec.history.costs[-1], len(live.frames))
                last["preview"] = time.monotonic()
                timings.setdefault("first_preview", last["preview"] - (receiver.first_frame or last["preview"]))
        if snap:
            live.rec.write(schedule.snapshot)  # collective, atomic: a reader sees the previous snapshot or this one
            snapshots += 1
            last["snapshot"] = time.monotonic()
    if rank == 0:
        timings["last_frame"] = time.monotonic() - (receiver.first_frame or time.monotonic())
    end = time.monotonic()
    if not live.frames:
        raise ValueError("no frame could be joined with a position: nothing to reconstruct")
    live.step(final=True)
    live.rec.iterate(max(schedule.final_epochs - 1, 0) if why != "signal" else 0)
    timings["final_epochs_seconds"] = time.monotonic() - end
    if sources.previewing:  # the final preview
        obj = live.rec.gather_object()
        if rank == 0:
            preview.publish(obj, asnumpy(live.rec.state.probe), live.rec.history.costs[-1], len(live.frames))
    result = {"why": why, "timings": timings, "epochs_while_streaming": live.epochs_run - 1, "snapshots": snapshots}
    if sources.distributed and rank == 0:
        result["frames_per_rank"] = [receiver.own] + handed[1:].tolist()
    return result
