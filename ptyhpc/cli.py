"""Command line: ``ptyhpc simulate | reconstruct | compare | info | submit | scaling``.

``cli`` only wires the modules together. Under ``mpiexec -n R`` the same ``reconstruct`` command runs on R ranks;
an error on any rank prints one line naming the rank and aborts every rank (no rank is left waiting).
SIGTERM or SIGUSR1 (a preempted or over-time batch job) ends the epoch in progress on every rank, writes the
checkpoint ``OUT.checkpoint.h5`` and exits with 128 + the signal number; ``--resume`` continues from it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np

from .backend import DeviceError, describe
from .config import ALGORITHMS, BATCHINGS, ReconConfig
from .engine import Diverged
from .io.dataset import InputError, check_object, check_probe, in_near_field

log = logging.getLogger("ptyhpc")


def _simulate(args) -> int:
    from .simulate import SimConfig, write

    cfg = SimConfig(object_size=args.object_size, probe_size=args.probe_size, positions=args.positions,
                    probe_diameter=args.probe_diameter, aperture_radius=args.aperture_radius, step=args.step,
                    scan=args.scan, photons=args.photons, bad_pixels=args.bad_pixels, seed=args.seed,
                    position_error=args.position_error, position_drift=args.position_drift,
                    probe_variation=args.probe_variation, near_field=args.near_field,
                    focus_distance_m=args.focus_distance, slices=args.slices,
                    slice_spacing_m=args.slice_spacing, images=args.images)
    truth = write(args.out, cfg)
    print(f"wrote {args.out} ({cfg.positions} patterns of {cfg.probe_size}x{cfg.probe_size}) and {truth}")
    if args.initial_probe:
        from .simulate import initial_probe_guess

        np.save(args.initial_probe, initial_probe_guess(cfg))
        print(f"wrote {args.initial_probe} (starting probe: 25 % more defocus, no aberrations)")
    return 0


def _initial_object(path, dataset) -> np.ndarray:
    """An initial object: a .npy file of the scan's object shape, or a product file's object placed on the scan's
    grid (``io.product.initial_object``)."""
    if path.endswith(".npy"):
        return check_object(path, "object", _initial(path, "object"), dataset.object_shape)
    from .io.product import initial_object

    return initial_object(path, dataset)


def _initial(path, key: str) -> np.ndarray:
    """An initial guess ``key`` ('probe' or 'object') from a .npy file or a product file."""
    if path.endswith(".npy"):
        try:
            return np.load(path)
        except (OSError, ValueError) as e:
            raise InputError(path, "-", f"not a readable .npy file ({e})") from None
    from .io.product import read_product

    return read_product(path)[key]


def _config(args, stated=None) -> ReconConfig:
    """The settings in force: the defaults, then what the input states (``stated``, e.g. a Ptychodus folder's
    settings.ini), the TOML file, the flags and ``--set``, each over the one before."""
    cfg = ReconConfig(**(stated or {}))
    cfg = ReconConfig.from_toml(args.config, base=cfg) if args.config else cfg
    cfg = cfg.replace(algorithm=args.algorithm, epochs=args.epochs, probe_modes=args.probe_modes,
                      opr_modes=args.opr_modes,
                      device=args.device, batch_size=args.batch_size, batching=args.batching, noise=args.noise,
                      precision=args.precision, seed=args.seed, correct_positions=args.correct_positions,
                      near_field=args.near_field, focus_distance_m=args.focus_distance, slices=args.slices,
                      slice_spacing_m=args.slice_spacing)
    for item in args.set or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set {item}: expected KEY=VALUE")
        cfg = cfg.replace(**{key.strip(): ReconConfig.parse(key.strip(), value)})
    return cfg


def checkpoint_path(output) -> str:
    """``OUT.checkpoint.h5`` beside the output ``OUT.h5``."""
    return os.path.splitext(os.fspath(output))[0] + ".checkpoint.h5"


def preview_path(output) -> str:
    """``OUT.png`` beside the output ``OUT.h5``."""
    return os.path.splitext(os.fspath(output))[0] + ".png"


def _load(args):
    """The input named on the command line, through Ptychodus' reader ``--reader`` if one is named."""
    from .io import load

    dataset = load(args.input, flip_translation=args.flip_translation, reader=args.reader,
                   positions=args.positions, positions_reader=args.positions_reader, crop=args.crop)
    return dataset.subset(args.subset) if args.subset else dataset


def _check_outputs(args, dataset, ckpt, rank) -> None:
    """Before any computing: nothing the run writes may land on a file it reads, or where it cannot be written."""
    from .io.output import check_outputs

    outputs = [("-o", args.output), ("checkpoint", ckpt)]
    if not args.no_preview:
        outputs.append(("preview", preview_path(args.output)))
    inputs = [("INPUT", p) for p in dataset.sources] + [("--probe", args.probe), ("--object", args.object),
                                                        ("--resume", args.resume), ("--config", args.config)]
    check_outputs(outputs, inputs, probe_writable=rank == 0, may_replace={("checkpoint", "--resume")})


def _reconstruct(args) -> int:
    from .comm import world
    from .engine import Reconstruction, in_geometry, signals, stderr_progress

    comm = world()
    rank = comm.rank
    _config(args)  # settings errors before the input is opened
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every {args.checkpoint_every}: must be >= 0")
    dataset = _load(args)
    cfg = _config(args, dataset.settings)
    dataset = in_geometry(dataset, cfg)
    ckpt = checkpoint_path(args.output)
    if args.resume == "auto":  # a rerun batch job: continue from the checkpoint when there is one
        args.resume = ckpt if os.path.isfile(ckpt) else None
    _check_outputs(args, dataset, ckpt, rank)
    probe = check_probe(args.probe, "probe", _initial(args.probe, "probe"), dataset.n) if args.probe else None
    obj = _initial_object(args.object, dataset) if args.object else None
    logging.basicConfig(level=logging.INFO if (args.verbose and rank == 0) else logging.WARNING,
                        format="%(message)s", stream=sys.stderr)
    rec = Reconstruction(dataset, cfg, comm, probe=probe, obj=obj, log=log.info, resume=args.resume)
    if rank == 0:
        print(f"ptyhpc: {cfg.algorithm} on {rec.comm.size} rank(s), {describe(rec.xp)}, {dataset.count} patterns "
              f"{dataset.n}x{dataset.n}, object {dataset.object_shape[0]}x{dataset.object_shape[1]}"
              + (f", resumed at epoch {rec.epoch} from {args.resume}" if args.resume else ""), file=sys.stderr)
        for name, start, used, what in (
                ("opr_start", cfg.opr_start, cfg.opr_modes, "the variable probe modes are never updated"),
                ("position_start", cfg.position_start, cfg.correct_positions, "no position is corrected")):
            if used and start >= cfg.epochs:
                print(f"ptyhpc: warning: {name} = {start} with {cfg.epochs} epochs: {what}", file=sys.stderr)
        if set(dataset.settings) - {"probe_modes"} or dataset.settings_ignored:  # a settings file was read
            print(f"ptyhpc: {dataset.path}: stated settings {dataset.settings} (the command line and --config "
                  f"override them); not used: {', '.join(dataset.settings_ignored) or 'none'}", file=sys.stderr)
    with signals(rec):
        stopped = rec.iterate(max(cfg.epochs - rec.epoch, 0), checkpoint=ckpt, every=args.checkpoint_every,
                              progress=stderr_progress(cfg.epochs) if rank == 0 and not args.quiet else None)
    if stopped:
        if rank == 0:
            print(f"ptyhpc: signal {stopped} at epoch {rec.epoch}: wrote {ckpt}; continue with the same command "
                  f"and --resume {ckpt}", file=sys.stderr)
        return 128 + stopped
    rec.write(args.output)
    if rank == 0:
        if not args.no_preview:
            from .io.product import read_product
            from .preview import save_preview

            r = read_product(args.output)
            png = preview_path(args.output)
            save_preview(png, r["layers"], r["probe"], r["losses"], title=f"{cfg.algorithm}, {cfg.epochs} epochs",
                         opr_weights=r.get("opr_weights"))
            print(f"wrote {args.output} and {png}")
        else:
            print(f"wrote {args.output}")
        h = rec.history
        if h.seconds:
            print(f"median {np.median(h.seconds):.4f} s/epoch, final cost {h.costs[-1]:.6e}", file=sys.stderr)
        if rec.comm.size > 1 and h.halo_bytes:
            print(f"halo: rank 0 sent {np.mean(h.halo_bytes) / 1e6:.3f} MB per epoch to {len(rec.comm.links)} "
                  f"neighbour(s); all ranks' counts are in the result file", file=sys.stderr)
    return 0


def _replay(args) -> int:
    from .io import pva

    dataset = _load(args)
    patterns = dataset.read_patterns(np.arange(dataset.count)).intensity
    frames = np.fft.fftshift(np.rint(patterns), axes=(-2, -1))  # as a detector gives them: centred counts
    frames = frames.astype(np.uint16 if frames.max() < 65535 else np.uint32)
    px = dataset.pixel_size or 1.0
    centres = (dataset.scan + dataset.n / 2) * px  # probe positions, (row, col) metres
    if args.repeat > 1:  # the scan K times, each pass moved by a third of a pixel more (no two positions alike)
        k = np.repeat(np.arange(args.repeat), dataset.count)[:, None]
        frames, centres = np.tile(frames, (args.repeat, 1, 1)), np.tile(centres, (args.repeat, 1)) + k * px / 3
    events = pva.schedule(len(frames), args.positions_chunk, args.shuffle, args.drop, args.duplicate, args.seed)
    if dataset.wavelength and dataset.distance and dataset.detector_pixel:
        from .units import ev_from_wavelength

        print(f"replay: receive with  ptyhpc stream --frames {args.frames} --positions {args.positions_channel} "
              f"--energy-ev {ev_from_wavelength(dataset.wavelength):.6g} --distance {dataset.distance:.6g} "
              f"--detector-pixel {dataset.detector_pixel:.6g} --expected {dataset.count * args.repeat} -o OUT.h5",
              flush=True)
    if args.stop_after:
        cut = [k for k, e in enumerate(events) if e[0] == "frame"][args.stop_after - 1] + 1
        events = events[:cut]
    pva.replay(frames, centres[:, 1], centres[:, 0], args.frames, args.positions_channel, args.rate, events,
               start_delay=args.start_delay, linger=args.linger, log=lambda m: print(m, flush=True),
               end=not args.stop_after)
    return 0


STREAM_KEYS = ("frames", "positions", "expected", "final_epochs", "quiet_seconds", "timeout", "preview",
               "preview_every", "energy_ev", "distance", "detector_pixel", "route", "snapshot_every")
"""Keys of a stream profile's [stream] table (the command line's options without dashes); [stream.fields] names
the positions update's fields (trigger, x, y, last)."""
STREAM_DEFAULTS = {"final_epochs": 50, "quiet_seconds": 2.0, "timeout": 30.0, "preview_every": 1.0,
                   "route": "receiver", "snapshot_every": 30.0}


def _stream_profile(args) -> dict:
    """Apply a TOML stream profile (``--profile``) below the command line: options the command line did not give
    take the profile's values; returns the field names of the positions updates."""
    if not args.profile:
        return {}
    from .config import tomllib

    try:
        with open(args.profile, "rb") as f:
            table = tomllib.load(f).get("stream", {})
    except OSError as e:
        raise ValueError(f"{args.profile}: -: cannot read the profile ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{args.profile}: -: TOML syntax error: {e}") from None
    fields = table.pop("fields", {})
    unknown = sorted(set(table) - set(STREAM_KEYS)) + sorted(f"fields.{k}" for k in set(fields) - {"trigger", "x",
                                                                                                    "y", "last"})
    if unknown:
        raise ValueError(f"{args.profile}: stream: unknown key(s) {unknown}; known: {list(STREAM_KEYS)} and fields."
                         "trigger/x/y/last")
    for key, value in table.items():
        dest = "positions_channel" if key == "positions" else key
        if getattr(args, dest, None) is None:  # the command line wins
            setattr(args, dest, value)
    return fields


def _stream(args) -> int:
    from .comm import world
    from .stream import Live, Rows, Schedule, Sources, run

    comm = world()
    rank = comm.rank
    fields = _stream_profile(args)
    for key, value in STREAM_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name, flag in (("frames", "--frames"), ("positions_channel", "--positions")):
        if not getattr(args, name):
            raise ValueError(f"{flag}: needed (on the command line or in the profile's [stream] table)")
    cfg = _config(args)  # settings errors before anything is received
    for name in ("energy_ev", "distance", "detector_pixel"):
        if not getattr(args, name) or getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')}: needed (> 0) to turn positions in metres into pixels")
    stem = os.path.splitext(os.fspath(args.output))[0]
    from .io.output import check_outputs

    # before anything is received: a scan must not end in an output that cannot be written
    outputs = [("-o", args.output), ("scan", stem + ".scan.cxi"), ("report", stem + ".stream.json")]
    if not args.no_preview:
        outputs.append(("preview", preview_path(args.output)))
    check_outputs(outputs, [("--probe", args.probe), ("--config", args.config), ("--profile", args.profile)],
                  probe_writable=rank == 0)
    probe = _initial(args.probe, "probe") if args.probe else None
    live = Live(cfg, comm, args.energy_ev, args.distance, args.detector_pixel, probe=probe, log=log.info)
    if args.route not in ("receiver", "distributor"):
        raise ValueError(f"--route: 'receiver' or 'distributor', not {args.route!r}")
    distributed = args.route == "distributor" and comm.size > 1
    group = comm.bcast(f"ptyhpc-{os.getpid()}") if distributed else ""  # this job's ranks, no other's
    receiver = preview = share = None
    from .io import pva

    if rank == 0:
        receiver = pva.Receiver(args.frames, args.positions_channel, fields, group=group)
        preview = pva.Preview(args.preview) if args.preview else None
    elif distributed:
        share = pva.Share(args.frames, group)
    import signal

    caught = []  # SIGTERM (a scheduler ending the job, mpiexec forwards it): end the scan, write what arrived
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        result = run(live, Sources(receiver=receiver, preview=preview, previewing=bool(args.preview),
                                   distributed=distributed, share=share, stop=lambda: bool(caught)),
                     Schedule(expected=args.expected, quiet=args.quiet_seconds, timeout=args.timeout,
                              final_epochs=args.final_epochs, preview_every=args.preview_every,
                              snapshot=args.output, snapshot_every=args.snapshot_every))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if share is not None:
            share.close()
        joiner = receiver.close() if receiver is not None else None
    live.rec.write(args.output)
    if rank == 0:
        from .io import cxi

        report = joiner.report(args.expected)
        report.update(result)
        report["channels_made_anew"] = receiver.reopened()
        order = np.argsort(live.triggers, kind="stable")  # the joined scan in trigger order, as the product
        cxi.write(stem + ".scan.cxi", Rows(live.frames, order), np.asarray(live.x)[order],
                  np.asarray(live.y)[order], args.energy_ev, args.distance, args.detector_pixel,
                  triggers=np.asarray(live.triggers)[order])
        with open(stem + ".stream.json", "w") as f:
            json.dump(report, f)
        shares = report.get("frames_per_rank")
        if shares and sum(shares) > 1.5 * max(report["joined"], 1):  # every rank got (nearly) every frame
            log.warning(f"stream: the ranks received {sum(shares)} frames for {report['joined']} joined: the frames "
                        "server does not deal them out (no pydistributor plugin?); --route receiver costs less")
        print(f"stream: scan over ({result['why']}): {report['joined']} frames joined with their positions, "
              f"{result['epochs_while_streaming']} epochs while it ran; {report['duplicate_frames']} duplicate "
              f"frames and {report['duplicate_positions']} duplicate positions dropped ({report['conflicts']} "
              f"conflicting), {len(report['frames_without_position'])} frames without a position, "
              f"{len(report['positions_without_frame'])} positions without a frame"
              + (f", {len(report['never_arrived'])} of {args.expected} never arrived" if args.expected else "")
              + f"; {result['snapshots']} snapshot(s) while it ran; wrote {args.output}, {stem}.scan.cxi, "
              f"{stem}.stream.json", file=sys.stderr)
        if not args.no_preview:
            from .io.product import read_product
            from .preview import save_preview

            r = read_product(args.output)
            save_preview(preview_path(args.output), r["layers"], r["probe"], r["losses"],
                         title=f"{cfg.algorithm}, streamed, {report['joined']} positions")
    return 128 + signal.SIGTERM if result["why"] == "signal" else 0


def _site(args):
    from .launch import load_site

    return load_site(args.site, queue=args.queue, walltime=args.walltime, account=args.account,
                     partition=args.partition)


def _submit(args) -> int:
    from .launch import ssh
    from .launch.submit import submit

    extra, site = _forward(args), _site(args)
    if site.provider == "globus-compute":
        from .launch import globus

        return globus.submit(site, args.input, args.output, extra, nodes=args.nodes, ranks_per_node=args.ranks,
                             stage=args.stage, dry_run=args.dry_run)
    if site.provider == "ssh":
        return ssh.submit(site, args.input, args.output, extra, nodes=args.nodes, ranks_per_node=args.ranks,
                          stage=args.stage, dry_run=args.dry_run)
    if args.stage:
        raise ValueError(f"--stage: site {site.name} is reached through Parsl on a shared filesystem; staging "
                         "is for ssh sites")
    return submit(site, args.input, args.output, extra, nodes=args.nodes, ranks_per_node=args.ranks,
                  dry_run=args.dry_run)


def _endpoint_config(args) -> int:
    from .launch.globus import endpoint_config, progress_endpoint_config

    site = _site(args)
    print(progress_endpoint_config(site) if args.progress else endpoint_config(site, args.nodes), end="")
    return 0


def _status(args) -> int:
    from .launch.ssh import status

    return status(args.job)


def _scaling(args) -> int:
    from .launch import scaling

    extra = _forward(args)
    nodes = [int(x) for x in args.nodes.split(",")]
    if args.collect:
        summary = scaling.collect(args.collect, args.mode)
        path, png = scaling.write_summary(summary, args.folder)
    else:
        site = _site(args)
        ranks = [int(x) for x in (args.ranks or str(site.ranks_per_node)).split(",")]
        summary, path, png = scaling.campaign(site, args.input, args.folder, nodes, ranks, args.mode, extra,
                                              positions_per_rank=args.positions_per_rank)
    for r in summary["runs"]:
        print(f"{r['ranks']:4d} rank(s)  {r['seconds_per_epoch']:.4f} s/iteration  efficiency "
              f"{r['efficiency']:.2f}  halo {r['halo_bytes_per_epoch'] / 1e6:.3f} MB/iteration")
    where = "" if args.collect or site.provider != "globus-compute" else f" on {site.name}"
    print(f"wrote {path} and {png}{where}")
    return 0


def _compare(args) -> int:
    from .compare import compare_files

    errors = compare_files(args.result, args.truth)
    if args.json:
        print(json.dumps(errors))
    else:
        print(f"object NRMSE            {errors['object_nrmse']:.4f}  (global complex factor removed)")
        print(f"object NRMSE, ramp too  {errors['object_nrmse_ramp']:.4f}  (and a linear phase ramp)")
        dy, dx = errors["registered_shift_px"]
        print(f"object NRMSE, shift too {errors['object_nrmse_registered']:.4f}  (registered: and the translation that "
              f"fits best, {dy:+.3f}, {dx:+.3f} px, which a far-field detector cannot see)")
        print(f"probe NRMSE             {errors['probe_nrmse']:.4f}  (first mode, global complex factor)")
        for k, e in enumerate(errors.get("slices", []), start=1):
            print(f"slice {k} NRMSE          {e['object_nrmse']:.4f}, ramp too {e['object_nrmse_ramp']:.4f}")
        if "position_error_px" in errors:
            print(f"position error          {errors['position_error_px']:.3f} px  (RMS, mean offset removed)")
            parts = errors["position_error_parts"]
            print(f"  of which                scale and shear {parts['scale_shear_px']:.3f}, rotation "
                  f"{parts['rotation_px']:.3f}, the rest {parts['rest_px']:.3f} px  (a linear map of the true "
                  "positions, and what it leaves)")
        print(f"scanned region          rows {errors['region'][0]}:{errors['region'][1]}, "
              f"columns {errors['region'][2]}:{errors['region'][3]} of the truth")
    return 0


def _frc(args) -> int:
    from .compare import frc_files

    r = frc_files(args.a, args.b)
    if args.json:
        print(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}))
        return 0
    where = f" = {r['resolution_m'] * 1e9:.1f} nm" if "resolution_m" in r else ""
    print(f"FRC resolution  {r['resolution_px']:.2f} px{where}  (full period at the half-bit threshold)")
    print(f"registration    B moved by ({r['shift_px'][0]:+.2f}, {r['shift_px'][1]:+.2f}) px onto A; region rows "
          f"{r['region'][0]}:{r['region'][1]}, columns {r['region'][2]}:{r['region'][3]}")
    return 0


def _plan_fft(args) -> int:
    import time

    from .backend import FFTW_WISDOM, plan_fftw

    path = args.wisdom or FFTW_WISDOM
    t = time.perf_counter()
    count = plan_fftw(path, sizes=args.sizes, batches=range(1, args.batch + 1), modes=args.modes,
                      log=lambda msg: print(msg, flush=True))
    print(f"plan-fft: {count} plans in {time.perf_counter() - t:.1f} s -> {path}")
    return 0


def _info(args) -> int:
    import h5py

    path = args.input
    if not args.reader and os.path.isfile(path) and h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if "object" in f and "probe" in f:
                from .io.product import read_product

                r = read_product(path)
                print(f"product file    {path}")
                print(f"object          {r['object'].shape[0]} x {r['object'].shape[1]}, pixel {r['pixel_size']:.4e} m")
                varying = "" if r["opr_weights"] is None else (f", varying along the scan with "
                                                                f"{r['opr_weights'].shape[1] - 1} OPR mode(s)")
                print(f"probe           {r['probe'].shape[0]} mode(s) of {r['probe'].shape[1]} x {r['probe'].shape[2]}"
                      f"{varying}")
                energy = next((float(f.attrs[k]) for k in ("photon_energy_eV", "probe_energy_eV") if k in f.attrs), 0)
                print(f"photon energy   {f'{energy:.1f} eV' if energy else 'none in the file'}")
                extent = np.ptp(r["scan"], axis=0) if len(r["scan"]) else (0, 0)
                print(f"positions       {len(r['scan'])} probe positions (as Ptychodus places them), span "
                      f"{extent[0]:.1f} x {extent[1]:.1f} px")
                if r["losses"]:
                    print(f"epochs          {len(r['losses'])}, final cost {r['losses'][-1][1]:.6e}")
                return 0
    dataset = _load(args)
    if args.near_field:
        dataset = in_near_field(dataset, args.focus_distance or 0.0)
    print(dataset.describe())
    return 0


RECONSTRUCT_PATHS = ("probe", "object", "config", "resume", "positions")
"""Reconstruct options that name files: made absolute when forwarded to a job that runs elsewhere."""


def _reconstruct_options(r, inputs: bool = True) -> list:
    """Add the options of ``ptyhpc reconstruct`` (all but INPUT and -o) to ``r``; returns their actions, which
    ``submit`` and ``scaling`` forward (``_forward``). ``inputs`` False: without those that choose how an input
    file is read (``stream`` has no input file, and its --positions names a channel)."""
    add = r.add_argument
    return [
        add("--algorithm", choices=ALGORITHMS),
        add("--epochs", type=int),
        add("--probe-modes", type=int),
        add("--opr-modes", type=int, metavar="K", help="K variable probe modes along the scan (OPR; rPIE, LSQML)"),
        add("--probe", help="initial probe: .npy (MODES, N, N) or a product file"),
        add("--object", help="initial object: .npy (H, W) or a product file of the same scan"),
        add("--config", help="TOML file with a [reconstruct] table"),
        add("--device", choices=("cpu", "gpu", "auto")),
        add("--batch-size", type=int),
        add("--batching", choices=BATCHINGS),
        add("--noise", choices=("gaussian", "poisson")),
        add("--precision", choices=("complex64", "complex128")),
        add("--seed", type=int),
        add("--correct-positions", action="store_true", default=None,
            help="refine the scan positions from the data (rPIE, LSQML; settings position_*)"),
        *_geometry_options(add),
        add("--slices", type=int, metavar="S", help="multislice: the object as S slices (rPIE, LSQML)"),
        add("--slice-spacing", type=float, metavar="M", help="multislice: distance between slices, metres"),
        add("--set", action="append", metavar="KEY=VALUE", help="any other setting (repeatable)"),
        add("--checkpoint-every", type=int, default=0, metavar="N",
            help="write OUT.checkpoint.h5 every N epochs (always on SIGTERM/SIGUSR1)"),
        add("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (any number of ranks); 'auto': from "
                                                   "OUT.checkpoint.h5 when it exists (rerun batch jobs)"),
        add("--flip-translation", action="store_true",
            help="mirror the positions: the file holds the other party's positions than its format says"),
        *(_input_options(add) if inputs else []),
        add("--no-preview", action="store_true", help="do not write the PNG preview"),
        add("--quiet", action="store_true", help="no per-epoch progress"),
        add("-v", "--verbose", action="store_true"),
    ]


def _geometry_options(add) -> list:
    """Options that choose the propagation geometry (reconstruct and info)."""
    return [
        add("--near-field", action="store_true", default=None,
            help="near-field (Fresnel) ptychography: the patterns are images, propagated by the angular spectrum"),
        add("--focus-distance", type=float, metavar="M",
            help="near field in a cone beam: focus-to-sample distance, metres (default: the file's "
                 "source_1/distance, else a parallel beam)"),
    ]


def _input_options(add) -> list:
    """Options that choose how the input is read (reconstruct and info)."""
    return [
        add("--reader", metavar="NAME", help="read INPUT with Ptychodus' reader NAME (e.g. APS_Velociprobe, CXI, NPZ; "
                                             "needs the ptychodus extra)"),
        add("--positions", metavar="FILE", help="with --reader: the positions file (default: INPUT)"),
        add("--positions-reader", metavar="NAME", help="with --reader: Ptychodus' position reader (default: --reader)"),
        add("--crop", type=int, default=0, metavar="N", help="with --reader: N x N pixels around the beam centre"),
        add("--subset", metavar="K/M", help="only the positions whose index is K modulo M ('even' = 0/2, 'odd' = "
                                            "1/2), on the whole scan's object grid: two halves for ptyhpc frc"),
    ]


def _forward(args) -> list:
    """The reconstruct options given on this command line, as arguments for ``ptyhpc reconstruct``."""
    out = []
    for action in args.reconstruct_actions:
        value = getattr(args, action.dest)
        if value is None or value is False or value == action.default:
            continue
        flag = action.option_strings[-1]
        if value is True:
            out.append(flag)
        else:
            for v in value if isinstance(value, list) else [value]:
                absolute = action.dest in RECONSTRUCT_PATHS and not (action.dest == "resume" and v == "auto")
                out += [flag, os.path.abspath(v) if absolute else str(v)]
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ptyhpc", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a simulated dataset (CXI) and its ground truth (OUT_truth.h5)")
    s.add_argument("out")
    s.add_argument("--object-size", type=int, default=512)
    s.add_argument("--probe-size", type=int, default=128)
    s.add_argument("--positions", type=int, default=700)
    s.add_argument("--probe-diameter", type=float, default=44.0, help="geometric spot diameter, pixels")
    s.add_argument("--aperture-radius", type=float, default=16.0, help="far-field disc radius, detector pixels")
    s.add_argument("--step", type=float, default=0.0,
                   help="mean step, pixels: the positions cover a square STEP x sqrt(positions) across (0: fill "
                        "the object)")
    s.add_argument("--scan", choices=("spiral", "raster"), default="spiral")
    s.add_argument("--photons", type=float, default=1e6, help="photons per pattern (0: no noise)")
    s.add_argument("--bad-pixels", type=int, default=0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--images", type=int, choices=(0, 1), default=0,
                   help="the object's image pair: 0 a photograph and a relief (standard), 1 an MRI slice and a "
                        "sea-floor topography (held out)")
    s.add_argument("--position-error", type=float, default=0.0, metavar="PX",
                   help="random error of the recorded positions (normal, per coordinate), pixels; the truth keeps "
                        "the true ones")
    s.add_argument("--position-drift", type=float, default=0.0, metavar="PX",
                   help="linear drift of the recorded positions along the scan, pixels by its end")
    s.add_argument("--probe-variation", type=float, default=0.0, metavar="F",
                   help="the probe changes along the scan: defocus x (1 +- F), intensity x (1 +- F/2)")
    s.add_argument("--near-field", action="store_true",
                   help="near-field (Fresnel) scan in a cone beam: images on the detector, a wide structured probe")
    s.add_argument("--focus-distance", type=float, default=3.65e-3, metavar="M",
                   help="near field: focus-to-sample distance, metres (written to the file)")
    s.add_argument("--slices", type=int, default=1, metavar="S",
                   help="a thick sample of S slices (different images), --slice-spacing apart (multislice)")
    s.add_argument("--slice-spacing", type=float, default=0.0, metavar="M", help="distance between slices, metres")
    s.add_argument("--initial-probe", metavar="NPY", help="also write the usual starting probe guess here")
    s.set_defaults(run=_simulate)

    r = sub.add_parser("reconstruct", help="reconstruct object and probe (runs unchanged under mpiexec -n R)")
    r.add_argument("input", help="CXI file, tike npz (.npz/.npz.bz2) or Ptychodus input folder")
    r.add_argument("-o", "--output", required=True, help="product file to write (HDF5)")
    _reconstruct_options(r)
    r.set_defaults(run=_reconstruct)

    y = sub.add_parser("replay", help="serve a scan as a detector and a positions channel over PV Access (demo)")
    y.add_argument("input", help="any input ptyhpc reads")
    y.add_argument("--frames", required=True, metavar="CH", help="frames channel (NTNDArray, uniqueId = trigger)")
    y.add_argument("--positions", dest="positions_channel", required=True, metavar="CH", help="positions channel")
    y.add_argument("--rate", type=float, default=100.0, metavar="HZ", help="frames per second (0: as fast as can)")
    y.add_argument("--shuffle", action="store_true", help="frames out of order")
    y.add_argument("--drop", type=float, default=0.0, metavar="P", help="fraction of frames never sent")
    y.add_argument("--duplicate", type=float, default=0.0, metavar="P", help="fraction of frames sent twice")
    y.add_argument("--positions-chunk", type=int, default=50, metavar="K", help="positions per update")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--repeat", type=int, default=1, metavar="K", help="serve the scan K times (rate tests)")
    y.add_argument("--stop-after", type=int, default=0, metavar="K",
                   help="stop after K frames without the end marker (a server that dies mid-scan; tests)")
    y.add_argument("--start-delay", type=float, default=2.0, metavar="S", help="seconds before the first frame")
    y.add_argument("--linger", type=float, default=2.0, metavar="S", help="seconds served after the end marker")
    y.add_argument("--flip-translation", action="store_true", help="as for reconstruct")
    y.set_defaults(run=_replay, reader=None, positions=None, positions_reader=None, crop=0, subset=None)

    st = sub.add_parser("stream", help="receive frames and positions over PV Access, join them, reconstruct")
    st.add_argument("-o", "--output", required=True, help="product file to write (and OUT.scan.cxi, the joined scan)")
    st.add_argument("--profile", metavar="TOML", help="a stream profile: [stream] channel names and options, "
                                                      "[stream.fields] the positions' field names")
    st.add_argument("--frames", metavar="CH", help="frames channel(s), comma-separated (e.g. the output channels "
                    "of pvapy-hpc-consumer processes that each carry part of the frames)")
    st.add_argument("--positions", dest="positions_channel", metavar="CH")
    st.add_argument("--expected", type=int, metavar="N", help="the scan ends after N joined frames")
    st.add_argument("--final-epochs", type=int, metavar="E", help="epochs run once the scan has ended (50)")
    st.add_argument("--quiet-seconds", type=float, metavar="S",
                    help="after the end marker, end when nothing arrived for S seconds (2)")
    st.add_argument("--timeout", type=float, metavar="S",
                    help="a channel silent for S seconds from the start is an error; both silent: the scan ends (30)")
    st.add_argument("--preview", metavar="CH", help="publish previews on CH (phase), CH:amplitude, CH:probe, CH:cost")
    st.add_argument("--preview-every", type=float, metavar="S", help="seconds between previews (1)")
    st.add_argument("--snapshot-every", type=float, metavar="S", help="while the scan runs, write the product so far "
                    "to -o every S seconds (atomically; 30; 0: only at the end)")
    st.add_argument("--route", choices=("receiver", "distributor"), help="how frames reach the ranks: rank 0 "
                    "receives them all and broadcasts ('receiver', the default), or pvapy's data distributor deals "
                    "them to every rank in turn, gathered to rank 0 to be joined ('distributor')")
    st.add_argument("--energy-ev", type=float, help="photon energy (eV)")
    st.add_argument("--distance", type=float, help="sample-detector distance (m)")
    st.add_argument("--detector-pixel", type=float, help="detector pixel size (m)")
    _reconstruct_options(st, inputs=False)
    st.set_defaults(run=_stream, reader=None, positions=None, positions_reader=None, crop=0, subset=None)

    c = sub.add_parser("compare", help="object and probe NRMSE of a result against ground truth")
    c.add_argument("result")
    c.add_argument("truth")
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=_compare)

    f = sub.add_parser("frc", help="Fourier ring correlation of two reconstructions of one scan (half-bit threshold)")
    f.add_argument("a")
    f.add_argument("b")
    f.add_argument("--json", action="store_true")
    f.set_defaults(run=_frc)

    i = sub.add_parser("info", help="describe a supported file (input or product)")
    i.add_argument("input", metavar="FILE")
    i.add_argument("--flip-translation", action="store_true", help="as for reconstruct")
    _input_options(i.add_argument)
    _geometry_options(i.add_argument)
    i.set_defaults(run=_info)

    from .backend import PLANNED_SHAPES as planned

    pf = sub.add_parser("plan-fft", help="measure FFTW's plans of the batch FFTs once on this machine (the default "
                        "fft = 'auto' computes with them; scripts/setup.sh runs this)")
    pf.add_argument("--sizes", type=int, nargs="+", default=list(planned["sizes"]), metavar="N",
                    help="pattern sides N (default: %(default)s)")
    pf.add_argument("--batch", type=int, default=max(planned["batches"]),
                    help="plan every batch size 1..BATCH (default: %(default)s)")
    pf.add_argument("--modes", type=int, nargs="+", default=list(planned["modes"]), metavar="K",
                    help="probe modes (default: %(default)s)")
    pf.add_argument("--wisdom", default=None, help="the wisdom file (default: $PTYHPC_FFTW_WISDOM, else "
                    "<python prefix>/share/ptyhpc/fftw-wisdom)")
    pf.set_defaults(run=_plan_fft)

    def site_options(q):
        q.add_argument("--site", default="local", help="site profile: local, slurm, polaris, or a .toml file")
        q.add_argument("--queue", help="PBS queue (overrides the profile)")
        q.add_argument("--partition", help="Slurm partition (overrides the profile)")
        q.add_argument("--walltime", help="HH:MM:SS (overrides the profile)")
        q.add_argument("--account", help="allocation/project (overrides the profile)")

    u = sub.add_parser("submit", help="run a reconstruction on a site through Parsl (workstation, Slurm, Polaris)")
    u.add_argument("input")
    u.add_argument("-o", "--output", required=True)
    site_options(u)
    u.add_argument("--nodes", type=int, default=1)
    u.add_argument("--ranks", type=int, help="MPI ranks per node (default: the profile's ranks_per_node)")
    u.add_argument("--dry-run", action="store_true", help="print the batch script and mpiexec line, run nothing")
    u.add_argument("--stage", action="store_true", help="copy the input there and the results back (ssh sites: "
                   "rsync; globus-compute sites: Globus Transfer)")
    u.set_defaults(run=_submit, reconstruct_actions=_reconstruct_options(u.add_argument_group("reconstruct options")))

    e = sub.add_parser("endpoint-config", help="the Globus Compute endpoint configuration (YAML) of a site")
    site_options(e)
    e.add_argument("--nodes", type=int, default=1, help="nodes per block (the most one reconstruction takes)")
    e.add_argument("--progress", action="store_true", help="the progress endpoint's (progress_endpoint_id: a "
                   "thread pool on the login node that reads the runs' logs while they run)")
    e.set_defaults(run=_endpoint_config)

    t = sub.add_parser("status", help="state of a job submitted to an ssh site; fetches its result when done")
    t.add_argument("job")
    t.set_defaults(run=_status)

    g = sub.add_parser("scaling", help="a strong/weak scaling campaign on a site: JSON + PNG")
    g.add_argument("input", nargs="?", help="the data for strong scaling (default: a simulated set)")
    g.add_argument("-o", "--folder", default="scaling", help="folder for the runs, scaling.json and scaling.png")
    site_options(g)
    g.add_argument("--nodes", default="1", help="node counts, comma-separated (e.g. 1,2,4)")
    g.add_argument("--ranks", help="ranks per node, comma-separated (e.g. 1,2)")
    g.add_argument("--mode", choices=("strong", "weak"), default="strong")
    g.add_argument("--positions-per-rank", type=int, default=150, help="weak scaling: simulated positions per rank")
    g.add_argument("--collect", nargs="+", metavar="RESULT", help="only summarise these finished runs")
    g.set_defaults(run=_scaling, reconstruct_actions=_reconstruct_options(g.add_argument_group("reconstruct options")))
    return p


def _fail(message: str) -> int:
    """Print one line (with the rank when there are several) and end every rank."""
    from .comm import started

    ranks = started()
    prefix = f"ptyhpc: error (rank {ranks.rank} of {ranks.size})" if ranks.size > 1 else "ptyhpc: error"
    sys.stderr.write(f"{prefix}: {message}\n")
    sys.stderr.flush()
    if ranks.size > 1:
        import time

        time.sleep(0.5)  # let mpiexec forward the line: MPI_Abort can kill the forwarding proxy before it does
        ranks.abort(2)
    return 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `ptyhpc compare ... | head`: the reader has gone, there is no one to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush cannot fail
        return 1
    except Diverged as e:
        return _fail(f"{args.output}: -: not written: {e}; an existing {os.path.basename(args.output)} and its last "
                     "checkpoint are kept")
    except (InputError, DeviceError, ValueError) as e:
        return _fail(str(e))
    except OSError as e:  # a file the command itself opens (simulate's output, a PNG): FILE: -: problem
        return _fail(f"{e.filename}: -: {e.strerror}" if e.filename else str(e))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as e:  # a bug: keep the traceback, but still end every rank
        import traceback

        traceback.print_exc()
        return _fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
