"""One reconstruction on one or many ranks: read my patterns -> partition -> local state -> iterate -> write.

``Reconstruction`` is the whole public API of the engine. Every rank constructs it with the same dataset and
configuration (positions are small and every rank knows all of them; patterns are read per rank) and the
communicator (or None for a single process).

Checkpoints (``Reconstruction.checkpoint``) hold everything the next epoch depends on: the object (each rank
writes its core), the probe, the iteration number, the cost history and the algorithm's per-position state (DM's
exit waves). The batches are drawn from ``numpy.random.default_rng([seed, epoch(, rank)])`` afresh each epoch, so
the seed and the epoch number are the whole random state. Resuming on the same ranks continues bit for bit; on a
different number of ranks the new partition reads its tiles and rows from the file.
"""
from __future__ import annotations

import functools
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import opr, physics, positions
from .algorithms import ALGORITHMS
from .backend import DTYPES, asnumpy, describe, get_xp, limit_threads, synchronize, use_cpu_fft
from .comm import Ranks, TileComm
from .config import ReconConfig
from .io.dataset import InputError, in_near_field
from .partition import bisection_order, partition, stratified_batches
from .state import LocalState, batches_on


def detector_of(dataset):
    """The propagation from the sample to the detector of ``dataset``'s geometry: ``physics.FarField``, or the
    angular spectrum over the Fresnel-scaled distance (near field)."""
    if not dataset.near_field:
        return physics.FarField
    _, distance, _ = physics.fresnel_scaling(dataset.detector_pixel, dataset.distance, dataset.focus_distance or 0.0)
    return physics.AngularSpectrum(dataset.n, dataset.pixel_size, dataset.wavelength, distance)


def in_geometry(dataset, cfg: ReconConfig):
    """``dataset`` in the geometry ``cfg`` asks for (near field: ``io.dataset.in_near_field``)."""
    if cfg.near_field and not dataset.near_field:
        return in_near_field(dataset, cfg.focus_distance_m)
    return dataset


def add_modes(probe: np.ndarray, modes: int) -> np.ndarray:
    """Extend (K0, N, N) to ``modes`` modes: each new one is the first mode times a low-order phase ramp, at 10 %
    of its power; then orthogonalise."""
    if probe.shape[0] >= modes:
        return probe[:modes]
    n = probe.shape[-1]
    y, x = np.mgrid[:n, :n] / n
    extra = [probe[0] * np.sqrt(0.1) * np.exp(2j * np.pi * (k * x + (k // 2) * y)) for k in range(1, modes - len(probe) + 1)]
    return physics.orthogonalize_modes(np.concatenate([probe, np.array(extra)]).astype(np.complex64))


@dataclass
class History:
    epochs: list = field(default_factory=list)
    costs: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    halo_bytes: list = field(default_factory=list)
    """Halo bytes sent by this rank in each epoch run by this process (after a resume: since the resume)."""
    position_rms: list = field(default_factory=list)
    """RMS correction of all positions (from the recorded ones, pixels) after each epoch (position correction)."""


class Reconstruction:
    """Set up a reconstruction of ``dataset`` on the ranks of ``mpi_comm`` (None: one process).

    Parameters
    ----------
    dataset : ptyhpc.io.Dataset
    cfg : ReconConfig
    mpi_comm : comm.Ranks, an mpi4py communicator or None
    probe : (MODES, N, N) complex, optional initial probe (else the file's, else one made from the mean pattern);
        rescaled so sum |P|^2 equals the mean measured intensity per pattern
    obj : (H, W) complex, optional initial object (else 1 everywhere); each rank keeps only its tile
    resume : path of a checkpoint to continue from (object, probe, epoch, history and algorithm state come from
        it; ``probe`` and ``obj`` are then ignored)
    """

    def __init__(self, dataset, cfg: ReconConfig, mpi_comm=None, probe=None, obj=None, log=None, resume=None):
        dataset = in_geometry(dataset, cfg)
        self.dataset, self.cfg = dataset, cfg
        ranks = Ranks.of(mpi_comm)
        rank, size = ranks.rank, ranks.size
        self.log = log or (lambda msg: None)
        local_rank, local_size = ranks.node()
        use_cpu_fft(cfg.fft)
        limit_threads(local_size, blas_one=cfg.fft == "fftw")
        self.xp = get_xp(cfg.device, local_rank=local_rank)
        dtype = DTYPES[cfg.precision][0]
        self.unresolved = 0.0
        """Multislice regularisation: the width (pixels) of ``physics.share_unresolved``'s blur (0: none)."""
        if cfg.slices > 1 and cfg.slice_regularization and dataset.pixel_size and dataset.wavelength:
            self.unresolved = physics.unresolved_width(dataset.wavelength, cfg.slice_spacing_m, dataset.pixel_size)
        self.partition = partition(dataset.scan, dataset.n, dataset.object_shape, size,
                                   margin=_position_margin(dataset, cfg, resume),
                                   reach=int(np.ceil(4 * self.unresolved)))
        self.comm = TileComm(ranks, self.partition)
        self.detector = detector_of(dataset)
        tile = self.partition.tiles[rank]
        idx = self.partition.indices(rank)
        measured = dataset.read_patterns(idx, ranks)
        patterns = measured.intensity
        total, *masked = self.comm.allreduce(_read_counts(measured))  # one collective
        if not total > 0:
            raise InputError(dataset.path, dataset.patterns_dataset, "every pattern is zero: no photons to fit")
        self.masked = dict(zip(("pixels", "patterns", "dead_frames"), map(int, masked)))
        """Detector-marked pixels left out of their own pattern's fit, and dead frames left out whole (see
        ``Dataset.read_patterns``)."""
        if rank == 0:
            _report_masked(dataset, measured.marker, self.masked)
        mean_power = total / dataset.count
        self.algorithm = ALGORITHMS[cfg.algorithm]
        self.history = History()
        self.epoch = 0
        ck = None
        if resume is not None:
            from .io.product import read_checkpoint

            ck = read_checkpoint(resume, dataset, tile.box, idx, ranks)
            probe, obj = ck["probe"], None
            h = self.history
            h.epochs, h.costs, h.seconds = (ck["arrays"][k].tolist() for k in ("epochs", "costs", "seconds"))
            h.position_rms = ck["arrays"]["position_rms"].tolist() if "position_rms" in ck["arrays"] else []
            self.epoch = int(ck["attrs"]["epoch"])
        if probe is None:
            probe = dataset.probe
        if probe is None:
            mean = self.comm.allreduce(patterns.sum(axis=0, dtype=np.float64)) / dataset.count
            probe = self.detector.initial_probe(np.asarray(mean))
        same_modes = ck is not None and probe.shape[0] == cfg.probe_modes
        if not same_modes:  # a checkpoint's probe stays as it was: already orthogonal and scaled
            probe = add_modes(np.array(probe, dtype=np.complex64), cfg.probe_modes)  # a copy: never scale the caller's
            probe *= np.sqrt(mean_power / physics.probe_power(probe))
        self.mean_power = mean_power
        layers = (cfg.slices,) if cfg.slices > 1 else ()
        if ck is not None and ck["object"].shape[:-2] == layers:
            tile_obj = ck["object"]
        elif ck is None and obj is None:
            tile_obj = np.ones(layers + tile.shape, dtype=dtype)
        else:  # an initial object (H, W) or (S, H, W), or a checkpoint's with another slice count
            y0, y1, x0, x1 = tile.box
            given = ck["object"] if ck is not None else np.asarray(obj)[..., y0:y1, x0:x1]
            tile_obj = np.ones(layers + tile.shape, dtype=dtype)
            if given.ndim == 3 and layers and len(given) == cfg.slices:
                tile_obj[...] = given
            else:  # its projection into the first slice (the others start empty)
                (tile_obj[0] if layers else tile_obj)[...] = np.prod(given, axis=0) if given.ndim == 3 else given
        self.scan = np.array(ck["scan"] if ck is not None else dataset.scan, dtype=np.float64)
        """(POSI, 2) all positions in use (window corners, global object pixels), the same on every rank: the
        recorded ones (``dataset.scan``), or corrected ones (position correction; a checkpoint's)."""
        slice_prop = None
        if cfg.slices > 1:
            if not (dataset.pixel_size and dataset.wavelength):
                raise InputError(dataset.path, "-", "multislice needs the object pixel size and the wavelength, "
                                                    "which the file lacks")
            slice_prop = physics.AngularSpectrum(dataset.n, dataset.pixel_size, dataset.wavelength,
                                                 cfg.slice_spacing_m)
        self.state = LocalState.create(self.xp, dtype, tile, self.scan[idx], idx, patterns, dataset.mask,
                                       probe, tile_obj, invalid=measured.invalid, shift=physics.SHIFTS[cfg.shift],
                                       detector=self.detector)
        self.state.slice_prop = slice_prop
        del measured, patterns
        if cfg.opr_modes:  # a checkpoint's variable modes and weights when it has as many, else fresh ones
            saved = ck is not None and ck["opr"] is not None and len(ck["opr"][0]) == cfg.opr_modes
            modes, weights = ck["opr"] if saved else (opr.initial_modes(probe, cfg.opr_modes),
                                                      opr.initial_weights(idx, dataset.count, cfg.opr_modes))
            self.state.opr = self.xp.asarray(modes, dtype=dtype)
            self.state.opr_weights = self.xp.asarray(weights, dtype=self.state.patterns.dtype)
        restore = same_modes and ck["attrs"]["algorithm"] == cfg.algorithm  # else the algorithm state starts afresh
        self.astate = self.algorithm.init(self.state, self.comm, cfg, saved=ck["rows"] if restore else None)
        self._order = None
        """Bisection order of the positions that ``batches`` splits (set on first use; 'random' batching)."""
        self.stop_signal = 0
        """Set by a SIGTERM/SIGUSR1 handler (see ``signals``); ``iterate`` stops all ranks at the epoch's end."""
        self.log(f"rank {rank}/{size}: {len(idx)} positions, tile {tile.shape[0]}x{tile.shape[1]} at "
                 f"{tile.origin}, {len(self.comm.links)} neighbour(s)")

    # --- batches -------------------------------------------------------------------------------------------------
    def batches(self, epoch: int) -> list:
        """This rank's batches for ``epoch`` (lists of local indices), following the algorithm's BATCHES."""
        cfg, st = self.cfg, self.state
        kind = self.algorithm.BATCHES
        nlocal = len(st.indices)
        if kind == "local":
            return [np.arange(i, min(i + cfg.batch, nlocal)) for i in range(0, nlocal, cfg.batch)]
        # as many batches as one rank would run over all positions: with "aligned" batches of this rank's positions
        # every region of the object then gets as many sequential updates per epoch as on one rank, whatever the
        # rank count; "global" batches are the same on every rank (each rank keeps its members)
        count = -(-self.dataset.count // cfg.batch)
        if kind == "aligned":
            rng = np.random.default_rng([cfg.seed, epoch, self.comm.rank])
            return self._split(st.corner + st.tile.origin, count, rng)
        scan = self.dataset.scan
        local_of = np.full(len(scan), -1)
        local_of[st.indices] = np.arange(nlocal)
        rng = np.random.default_rng([cfg.seed, epoch])
        return [local_of[b][local_of[b] >= 0] for b in self._split(scan, count, rng)]

    def _split(self, scan, count, rng) -> list:
        """Split positions 0..len(scan)-1 (window corners ``scan``) into ``count`` batches (some maybe empty):
        'random' by :func:`~ptyhpc.partition.stratified_batches` over C cells, C the largest power of two <=
        batch / 4 (a tile of 2, 4, ... C ranks then holds an even share of every batch); 'compact' in spatially
        compact groups, fixed, in random order."""
        count = max(int(count), 1)
        if self.cfg.batching == "compact" and len(scan) >= count:
            owner = partition(scan, self.dataset.n, (1 << 30, 1 << 30), count).owner
            groups = [np.flatnonzero(owner == g) for g in range(count)]
            return [groups[g] for g in rng.permutation(count)]
        if self._order is None:  # the positions split (this rank's or all) are the same every epoch
            self._order = bisection_order(scan)
        cells = 1 << (max(self.cfg.batch // 4, 1).bit_length() - 1)
        return stratified_batches(self._order, count, cells, rng)

    # --- iterations ----------------------------------------------------------------------------------------------
    def iterate(self, epochs: int, progress=None, checkpoint=None, every: int = 0) -> int:
        """Run ``epochs`` more epochs; ``progress(epoch, cost, seconds)`` is called on every rank after each.

        With a ``checkpoint`` path, write a checkpoint every ``every`` epochs (0: never) and when a signal was
        caught (``stop_signal`` set on any rank): then stop after that epoch, on every rank, and return the
        signal number (0 when all epochs ran).
        """
        cfg = self.cfg
        for _ in range(epochs):
            t0 = time.perf_counter()
            sent0 = self.comm.halo_bytes_sent
            update_probe = cfg.update_probe and self.epoch >= cfg.probe_start
            batches = batches_on(self.xp, self.batches(self.epoch))  # one host-to-device copy per epoch
            st = self.state
            correct = cfg.correct_positions and self.epoch >= cfg.position_start
            if correct and st.steps is None:
                st.steps = self.xp.zeros(st.scan.shape, dtype=st.weights.dtype)
            update_opr = update_probe and st.opr is not None and self.epoch >= cfg.opr_start
            local = self.algorithm.iterate(st, self.astate, self.comm, cfg.at_epoch(self.epoch), batches,
                                           update_probe=update_probe, update_opr=update_opr)
            if self.unresolved:  # every core point reads only its tile; the halos then from their owners
                st.obj = physics.share_unresolved(st.obj, self.unresolved, cfg.slice_regularization)
                if self.comm.size > 1:
                    st.obj = self.comm.exchange(st.obj)
            if correct:
                self._move_positions()
            if st.probe.shape[0] > 1:
                st.probe = physics.orthogonalize_modes(st.probe)
            if cfg.probe_power:
                st.probe = st.probe * float(np.sqrt(self.mean_power / physics.probe_power(st.probe)))
            w_sum = [] if st.opr is None else asnumpy(st.opr_weights.sum(axis=0, dtype=np.float64))
            cost, stop, *w_sum = self.comm.allreduce(np.array([float(local), float(self.stop_signal), *w_sum]))
            cost /= self.dataset.count
            if st.opr is not None:  # the mean weights into the main probe, the modes to unit norm
                st.probe, st.opr, st.opr_weights = opr.recentre(st.probe, st.opr, st.opr_weights,
                                                                np.asarray(w_sum) / self.dataset.count)
            if not np.isfinite(cost):  # the same on every rank: all stop here, before anything is written
                raise Diverged(f"the cost became {cost} in epoch {self.epoch + 1} ({cfg.algorithm} diverged)")
            synchronize(self.xp)
            seconds = time.perf_counter() - t0
            self.epoch += 1
            h = self.history
            h.epochs.append(self.epoch)
            h.costs.append(cost)
            h.seconds.append(seconds)
            h.halo_bytes.append(self.comm.halo_bytes_sent - sent0)
            if cfg.correct_positions:
                h.position_rms.append(positions.rms(self.scan - self.dataset.scan))
            if progress is not None:
                progress(self.epoch, cost, seconds)
            if checkpoint is not None and (stop or (every and self.epoch % every == 0)):
                self.checkpoint(checkpoint)
            if stop:
                return self.stop_signal or int(signal.SIGTERM)  # a rank the signal missed stops all the same
        return 0

    @functools.cached_property
    def constraint(self) -> positions.Constraint:
        """What the position constraint needs of the recorded scan (made when first needed)."""
        return positions.Constraint(self.dataset.scan)

    def _move_positions(self) -> None:
        """Apply the epoch's position steps (collective: one all-gather of every rank's steps, 16 bytes a
        position): each step bounded by ``position_step_px``, then all of them constrained
        (:func:`positions.constrain`: systematic part fitted, smooth residual removed, mean held); every correction
        bounded by ``position_limit_px`` and every window kept in the object. Every rank then holds all positions
        in use (``scan``)."""
        cfg, st, d = self.cfg, self.state, self.dataset
        steps = np.zeros_like(self.scan)
        for idx, part in self.comm.allgather((st.indices, positions.clip_norm(
                asnumpy(st.steps).astype(np.float64), cfg.position_step_px))):
            steps[idx] = part
        st.steps.fill(0)
        new = self.scan + positions.constrain(steps, self.constraint, cfg.position_affine)
        new = d.scan + np.clip(new - d.scan, -cfg.position_limit_px, cfg.position_limit_px)
        self.scan = np.clip(new, 0, np.asarray(d.object_shape, dtype=np.float64) - d.n - 1e-6)
        st.move(self.scan[st.indices])

    def position_model(self) -> positions.Model:
        """The systematic part (offset, drift, affine) of the corrections so far, fitted over all positions."""
        return self.constraint.fit(self.scan - self.dataset.scan)

    def gather_opr(self):
        """(variable modes (C-1, N, N), weights of all positions (POSI, C-1)) on every rank (collective), or None
        without OPR."""
        st = self.state
        if st.opr is None:
            return None
        weights = np.empty((self.dataset.count, st.opr.shape[0]), dtype=np.float64)
        for idx, part in self.comm.allgather((st.indices, asnumpy(st.opr_weights))):
            weights[idx] = part
        return asnumpy(st.opr), weights

    def gather_scan(self) -> np.ndarray:
        """All positions in use (POSI, 2): the recorded ones, or the corrected ones."""
        return self.scan.copy()

    def checkpoint(self, path) -> None:
        """Write a checkpoint (collective): a product file whose object is in the run's precision, plus the
        epoch, the cost history and the algorithm's per-position state. Atomic: the previous one survives a crash.
        """
        h = self.history
        rows = {name: (self.state.indices, asnumpy(getattr(self.astate, name))) for name in self.algorithm.CHECKPOINT}
        self.write(path, checkpoint={
            "attrs": {"epoch": self.epoch, "algorithm": self.cfg.algorithm, "seed": self.cfg.seed,
                      "random_state": "batches: numpy default_rng([seed, epoch(, rank)]), nothing else is random"},
            "arrays": {"epochs": np.asarray(h.epochs, dtype=np.int64), "costs": np.asarray(h.costs),
                       "seconds": np.asarray(h.seconds),
                       **({"position_rms": np.asarray(h.position_rms)} if self.cfg.correct_positions else {})},
            "rows": rows,
        })

    # --- results -------------------------------------------------------------------------------------------------
    def core(self) -> np.ndarray:
        """This rank's core of the object, on the host."""
        sl = self.state.tile.local(self.state.tile.core)
        return asnumpy(self.state.obj[(...,) + sl])

    def gather_object(self) -> np.ndarray | None:
        """The whole object on rank 0 (None elsewhere), core by core. For tests and small objects only."""
        cores = self.comm.gather((self.state.tile.core, self.core()))
        if cores is None:
            return None
        out = np.ones(self.state.obj.shape[:-2] + tuple(self.dataset.object_shape), dtype=self.state.obj.dtype)
        for (y0, y1, x0, x1), c in cores:
            out[..., y0:y1, x0:x1] = c
        return out

    def write(self, path, extra=None, checkpoint=None) -> None:
        """Write the Ptychodus product file (collective: every rank calls it)."""
        from .io.product import Product, write_product

        d = self.dataset
        info = {
            "algorithm": self.cfg.algorithm, "ranks": self.comm.size, "epochs": self.epoch,
            "device": describe(self.xp),
            "seconds_per_epoch": self.history.seconds,
            "halo_bytes_per_epoch": self.comm.allreduce(np.asarray(self.history.halo_bytes, dtype=np.float64)
                                                        ).tolist() if self.history.halo_bytes else [],
            "neighbours": [len(self.partition.neighbours(r)) for r in range(self.partition.size)],
            "masked_marker_pixels": self.masked["pixels"], "masked_marker_patterns": self.masked["patterns"],
            "dead_frames": self.masked["dead_frames"],
            "config": self.cfg.to_dict(),
            # what the settings left to their defaults (0, 'auto') came to for this run
            "config_in_force": {"batch_size": self.cfg.batch, "subpixel": self.cfg.shift,
                                **({"lsqml_delta": self.cfg.delta} if self.cfg.algorithm == "lsqml" else {})},
            "geometry": d.geometry(),
        }
        if d.near_field:
            info["propagation_distance_m"] = self.detector.distance
            info["focus_distance_m"] = d.focus_distance or 0.0
        if self.cfg.correct_positions:
            info["position_rms_px"] = self.history.position_rms
            info["position_model"] = self.position_model().to_dict()
        core, probe = self.core(), asnumpy(self.state.probe)
        mine = {"finite": bool(np.isfinite(core).all() and np.isfinite(probe).all()),
                "peak_rss_bytes": peak_rss(), "halo_bytes_sent_per_rank": self.comm.halo_bytes_sent,
                "halo_bytes_received_per_rank": self.comm.halo_bytes_received,
                "allreduce_bytes_per_rank": self.comm.reduce_bytes,
                "patterns_read_per_rank": self.dataset.patterns_read, "bytes_read_per_rank": self.dataset.bytes_read}
        everyone = self.comm.allgather(mine)  # one collective for all per-rank facts
        if not all(r["finite"] for r in everyone):
            raise Diverged(f"the object or the probe holds NaN or Inf after epoch {self.epoch}")
        del mine["finite"]
        info.update({key: [r[key] for r in everyone] for key in mine})
        info.update(extra or {})
        product = Product(core=core, probe=probe, scan=self.gather_scan(), n=d.n, shape=d.object_shape,
                          core_box=self.state.tile.core, pixel_size=d.pixel_size, wavelength=d.wavelength,
                          distance=d.distance, losses=list(zip(self.history.epochs, self.history.costs)),
                          recorded_scan=d.scan, opr=self.gather_opr(),
                          layer_spacing=self.cfg.slice_spacing_m if self.cfg.slices > 1 else None, extra=info)
        write_product(path, product, comm=self.comm, checkpoint=checkpoint)


class Diverged(RuntimeError):
    """The reconstruction stopped being finite; raised on every rank at once, before anything is written."""


class signals:
    """``with signals(rec):`` SIGTERM and SIGUSR1 set ``rec.stop_signal`` instead of killing the process (PBS and
    Slurm send SIGTERM before they kill a preempted or over-time job; mpiexec forwards both to every rank)."""

    CAUGHT = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, rec):
        self.rec = rec

    def __enter__(self):
        def note(signum, frame):
            self.rec.stop_signal = signum

        self.previous = {s: signal.signal(s, note) for s in self.CAUGHT}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        return False


def _position_margin(dataset, cfg: ReconConfig, resume) -> int:
    """Pixels the tiles need around the recorded windows: as far as a position may be corrected
    (``position_limit_px``), or has been in the checkpoint resumed from, plus one (the sub-pixel part)."""
    reach = cfg.position_limit_px if cfg.correct_positions else 0.0
    if resume is not None:
        from .io.product import checkpoint_positions

        used = checkpoint_positions(resume)
        if used is not None and used.shape == dataset.scan.shape and np.isfinite(used).all():
            reach = max(reach, float(np.abs(used - dataset.scan).max()))
    return int(np.ceil(reach)) + 1 if reach > 0 else 0


def _read_counts(measured) -> np.ndarray:
    """[photons, marker pixels, patterns with a marker, dead frames] of this rank's patterns (dead frames, wholly
    invalid, are counted apart from the markers)."""
    p, dead = measured.intensity, measured.dead
    marked = measured.invalid[~dead] if measured.invalid is not None else np.zeros((0,) + p.shape[1:], bool)
    return np.array([p.sum(dtype=np.float64), marked.sum(), marked.any(axis=(1, 2)).sum(), dead.sum()],
                    dtype=np.float64)


def _report_masked(dataset, marker: str, masked: dict) -> None:
    """One warning line each for detector markers and dead frames left out (with their counts)."""
    warn, where = logging.getLogger("ptyhpc").warning, f"ptyhpc: {dataset.path}: {dataset.patterns_dataset}"
    if masked["pixels"]:
        warn(f"{where}: {masked['pixels']} pixel(s) in {masked['patterns']} pattern(s) hold the detector's marker "
             f"{marker}: left out of those patterns' fit")
    if masked["dead_frames"]:
        warn(f"{where}: {masked['dead_frames']} dead frame(s) (not a single count) left out of the fit")


def peak_rss() -> int:
    """This process's peak resident memory in bytes, as the OS counts it (VmHWM of /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024




def stderr_progress(total: int):
    """Progress printer: an updating line on a terminal, plain lines in a log."""
    tty = sys.stderr.isatty()

    def show(epoch, cost, seconds):
        line = f"epoch {epoch:4d}/{total}  cost {cost:.6e}  {seconds:7.3f} s"
        if tty:
            sys.stderr.write("\r" + line + ("\n" if epoch == total else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show
