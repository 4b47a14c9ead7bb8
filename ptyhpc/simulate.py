"""Synthetic far-field (or near-field) ptychography data with ground truth.

Object: amplitude from matplotlib's bundled Grace Hopper photograph scaled to [0.5, 1], phase from its bundled
Jacksboro fault elevation map scaled to [-1, 1] rad. Probe: a circular aperture (zone-plate focus) in the far
field, defocused so its geometric spot is ``probe_diameter`` pixels across, with slight astigmatism and coma.
Scan: a Fermat spiral clipped to a square (or a jittered raster) of sub-pixel positions. Patterns: |FFT2(P(r - d_j) O(r + n_j))|^2
with the exact Fourier shift of the probe, Poisson noise at ``photons`` per pattern, optional bad pixels.
Written as CXI (patterns centred, sample translation = -probe position, as cdtools reads it) plus a ground-truth
product file ``OUT_truth.h5`` beside it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from . import physics
from .io import cxi
from .io.product import Product, write_product
from .units import wavelength_from_ev


@dataclass(frozen=True)
class SimConfig:
    """Settings of a simulated dataset (defaults: the reference set of ../shared/peers.md)."""

    object_size: int = 512
    """Side of the square object, pixels."""
    probe_size: int = 128
    """Side of the probe window and of the patterns, N."""
    positions: int = 700
    """Number of scan positions."""
    probe_diameter: float = 44.0
    """Geometric diameter of the defocused probe, pixels."""
    aperture_radius: float = 16.0
    """Radius of the illuminated far-field disc (the optics' numerical aperture), detector pixels."""
    step: float = 0.0
    """Mean step between positions, pixels: the positions then cover a square of about step sqrt(positions) on a
    side, centred in the object (0: fill the object, as the positions count allows)."""
    scan: str = "spiral"
    """'spiral' (Fermat) or 'raster' (jittered raster)."""
    photons: float = 1e6
    """Mean photon count per pattern (Poisson noise); 0 disables noise."""
    bad_pixels: int = 0
    """Dead detector pixels (masked in the file, zero in the data)."""
    energy_ev: float = 10000.0
    distance_m: float = 2.0
    detector_pixel_m: float = 75e-6
    position_error: float = 0.0
    """Random error of each recorded position: normal, this standard deviation per coordinate, pixels."""
    position_drift: float = 0.0
    """Drift of the recorded positions, linear in scan time (the position index): this many pixels by the last
    position, in a direction drawn from the seed."""
    probe_variation: float = 0.0
    """A probe that changes along the scan (a fly scan's optics drifting): at scan time t in [0, 1] the defocus is
    (1 + F (2t - 1)) times the nominal one and the intensity (1 + F sin(2 pi t) / 2) times; F = this value. The
    truth's probe is the nominal one (t = 1/2)."""
    near_field: bool = False
    """Near-field (Fresnel) ptychography in a cone beam (as at PETRA III P25): the patterns are images of the wave
    ``distance_m`` downstream of the sample, which sits ``focus_distance_m`` downstream of the focus; the probe is
    a wide beam with a random phase structure (what a diffuser or the optics' figure errors give) filling about
    half the window."""
    focus_distance_m: float = 3.65e-3
    """Near field: focus-to-sample distance z1, metres."""
    slices: int = 1
    """A thick sample: this many slices (different images each, contrast divided by the count: amplitude in
    [1 - 0.5 / S, 1], phase in [-1/S, 1/S] rad), ``slice_spacing_m`` apart; the wave goes through them by
    angular-spectrum propagation (multislice)."""
    slice_spacing_m: float = 0.0
    seed: int = 0
    images: int = 0
    """Which of the bundled image pairs makes the object: 0 (a photograph and a relief, the standard set) or 1 (an
    MRI slice and a sea-floor topography: an object held out from the standard set, for checking that defaults
    hold beyond it). A thick sample's slices alternate between the pairs, starting from this one."""

    def geometry(self):
        """(object pixel m, wavelength m, the propagation ``physics`` operator in complex128 use)."""
        wavelength = wavelength_from_ev(self.energy_ev)
        if not self.near_field:
            return wavelength * self.distance_m / (self.probe_size * self.detector_pixel_m), wavelength, physics.FarField
        pixel, z, _ = physics.fresnel_scaling(self.detector_pixel_m, self.distance_m, self.focus_distance_m)
        return pixel, wavelength, physics.AngularSpectrum(self.probe_size, pixel, wavelength, z)


def _resize(img, shape):
    """Bilinear resampling of a 2-D image to ``shape`` (no dependency beyond NumPy)."""
    ys = np.linspace(0, img.shape[0] - 1, shape[0])
    xs = np.linspace(0, img.shape[1] - 1, shape[1])
    rows = np.array([np.interp(xs, np.arange(img.shape[1]), r) for r in img])
    return np.array([np.interp(ys, np.arange(img.shape[0]), c) for c in rows.T]).T


def _scale(img, lo, hi):
    img = img - img.min()
    return lo + (hi - lo) * img / max(img.max(), 1e-30)


def make_object(size: int, layer: int = 0, layers: int = 1) -> np.ndarray:
    """(size, size) complex64 from two bundled test images: amplitude in [1 - 0.5 / layers, 1], phase in
    [-1 / layers, 1 / layers] rad. Layer 0 (and every even layer, turned by 90 degrees per pair): a photograph
    (Grace Hopper) and a relief (Jacksboro fault); odd layers: an MRI slice and a sea-floor topography."""
    import matplotlib.image as mpimg
    from matplotlib import cbook

    if layer % 2 == 0:
        amp = mpimg.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).mean(axis=2)
        amp = amp[44:556]  # square 512 x 512
        with np.load(cbook.get_sample_data("jacksboro_fault_dem.npz", asfileobj=False)) as z:
            relief = z["elevation"][:, :344]
    else:
        with cbook.get_sample_data("s1045.ima.gz") as f:
            amp = np.frombuffer(f.read(), np.uint16).reshape(256, 256)
        with np.load(cbook.get_sample_data("topobathy.npz", asfileobj=False)) as z:
            relief = z["topo"][:, 14:105]
    amplitude = _scale(_resize(amp.astype(np.float64), (size, size)), 1 - 0.5 / layers, 1.0)
    phase = _scale(_resize(relief.astype(np.float64), (size, size)), -1.0 / layers, 1.0 / layers)
    out = amplitude * np.exp(1j * phase)
    return np.rot90(out, layer // 2).astype(np.complex64)


def make_probe(n: int, diameter: float, radius: float, photons: float, defocus_scale: float = 1.0,
               aberrations: bool = True) -> np.ndarray:
    """(1, N, N) complex64 probe, centred in its window, with sum |P|^2 = photons (or 1).

    Far field: a disc of ``radius`` pixels; defocus phase phi(q) = phi_e (q / radius)^2 with phi_e chosen so the
    geometric spot is ``diameter`` pixels across (diameter = 2 N phi_e / (pi radius)), times ``defocus_scale``;
    aberrations: 0.6 rad astigmatism and 0.4 rad coma at the aperture edge.
    """
    q = np.fft.fftfreq(n) * n
    qy, qx = np.meshgrid(q, q, indexing="ij")
    rho = np.hypot(qy, qx) / radius
    theta = np.arctan2(qy, qx)
    aperture = (rho <= 1).astype(np.float64)
    phi_edge = np.pi * radius * diameter / (2 * n) * defocus_scale
    phase = phi_edge * rho ** 2
    if aberrations:
        phase = phase + 0.6 * rho ** 2 * np.cos(2 * theta) + 0.4 * (3 * rho ** 3 - 2 * rho) * np.cos(theta)
    probe = np.fft.fftshift(np.fft.ifft2(aperture * np.exp(1j * phase)))
    probe *= np.sqrt((photons or 1.0) / physics.probe_power(probe))
    return probe[None].astype(np.complex64)


def make_near_field_probe(n: int, photons: float, seed: int) -> np.ndarray:
    """(1, N, N) complex64 near-field probe with sum |P|^2 = photons (or 1): a Gaussian beam of 0.4 N full width
    at half maximum whose phase carries a random structure (normal, 1.5 rad RMS, correlated over N / 24 pixels),
    as a diffuser or a mirror's figure errors give; the structure is what lets near-field ptychography separate
    the probe from the object."""
    rng = np.random.default_rng([seed, 2])
    y, x = (np.mgrid[:n, :n] - (n - 1) / 2) / n
    envelope = np.exp(-4 * np.log(2) * (x ** 2 + y ** 2) / 0.4 ** 2)
    f = np.fft.fftfreq(n)
    smooth = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) * (np.pi * n / 24) ** 2 / 2)
    phase = np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * smooth).real
    phase *= 1.5 / phase.std()
    probe = envelope * np.exp(1j * phase)
    probe *= np.sqrt((photons or 1.0) / physics.probe_power(probe))
    return probe[None].astype(np.complex64)


def make_scan(cfg: SimConfig, rng) -> np.ndarray:
    """(POSI, 2) float64 window corners (rows first) inside the object, sub-pixel."""
    n, size = cfg.probe_size, cfg.object_size
    lo, hi = 2.0, size - n - 2.0
    centre = (lo + hi) / 2
    if cfg.scan == "spiral":
        # A Fermat spiral clipped to a square (the square the windows may occupy, or with a given step the square
        # that holds the positions at it), so the scan covers a rectangle (as a beamline scan does) at uniform
        # density: one position per pi c^2 of area.
        def spiral(c):
            k = np.arange(8 * cfg.positions)
            r = c * np.sqrt(k + 0.5)
            golden = np.pi * (3 - np.sqrt(5))
            p = np.stack([r * np.sin(k * golden), r * np.cos(k * golden)], axis=1) + centre
            return p[((p >= lo) & (p <= hi)).all(axis=1)]

        c = cfg.step / np.sqrt(np.pi) if cfg.step else (hi - lo) / np.sqrt(np.pi * cfg.positions)
        pos = spiral(c)
        while not cfg.step and len(pos) < cfg.positions:  # tighten until exactly enough fall inside
            c *= 0.995
            pos = spiral(c)
        if cfg.step:  # the square patch of the positions nearest the centre (a disc would leave its corners out)
            pos = pos[np.sort(np.argsort(np.abs(pos - centre).max(axis=1), kind="stable")[: cfg.positions])]
        pos = pos[: cfg.positions]
        if len(pos) < cfg.positions:
            raise ValueError(f"{cfg.positions} positions at step {cfg.step} do not fit a {size}-pixel object with "
                             f"a {n}-pixel probe; lower --positions or --step, or raise --object-size")
    elif cfg.scan == "raster":
        side = int(np.ceil(np.sqrt(cfg.positions)))
        step = cfg.step or (hi - lo) / max(side - 1, 1)
        g = (np.arange(side) - (side - 1) / 2) * step
        yy, xx = np.meshgrid(g, g, indexing="ij")
        pos = np.stack([yy.ravel(), xx.ravel()], axis=1)[: cfg.positions] + centre
        pos += rng.uniform(-0.1, 0.1, pos.shape) * step
    else:
        raise ValueError(f"scan must be 'spiral' or 'raster', not {cfg.scan!r}")
    if pos.min() < lo or pos.max() > hi:
        raise ValueError(f"{cfg.positions} positions at step {cfg.step} do not fit a {size}-pixel object with a "
                         f"{n}-pixel probe; lower --positions or --step, or raise --object-size")
    return pos


def recorded_positions(cfg: SimConfig, scan: np.ndarray) -> np.ndarray:
    """The positions a stage would have recorded for the true ``scan`` (POSI, 2): plus normal random errors of
    ``position_error`` pixels per coordinate and a linear drift reaching ``position_drift`` pixels. Drawn from
    their own generator (seed + 1), so the patterns do not change with the errors."""
    if not (cfg.position_error or cfg.position_drift):
        return scan
    rng = np.random.default_rng([cfg.seed, 1])
    angle = rng.uniform(0, 2 * np.pi)
    t = np.linspace(0, 1, len(scan))[:, None]
    drift = cfg.position_drift * t * np.array([np.sin(angle), np.cos(angle)])
    return scan + rng.normal(0, cfg.position_error, scan.shape) + drift


def simulate(cfg: SimConfig):
    """Return (patterns (POSI, N, N) float32 with zero frequency at [0, 0] (near field: images as they are),
    scan, object, probe, mask)."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.probe_size
    if cfg.near_field and cfg.slices > 1:
        raise ValueError("a thick sample is simulated in the far field only")
    if cfg.slices > 1:
        obj = np.array([make_object(cfg.object_size, s + cfg.images, cfg.slices) for s in range(cfg.slices)])
        pixel, wavelength, _ = cfg.geometry()
        between = physics.AngularSpectrum(n, pixel, wavelength, cfg.slice_spacing_m)
    else:
        obj = make_object(cfg.object_size, cfg.images)
    if cfg.near_field:
        if cfg.probe_variation:
            raise ValueError("a probe that varies along the scan is simulated in the far field only")
        probe = make_near_field_probe(n, cfg.photons, cfg.seed)
    else:
        probe = make_probe(n, cfg.probe_diameter, cfg.aperture_radius, cfg.photons)
    _, _, detector = cfg.geometry()
    scan = make_scan(cfg, rng)
    patterns = np.empty((len(scan), n, n), dtype=np.float32)
    probe_ft = np.fft.fft2(probe[0].astype(np.complex128))
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.fftfreq(n)[None, :]
    def moved(a, shift):  # the whole object shifted by a sub-pixel amount (exact, band-limited)
        return physics.fourier_shift(a.astype(np.complex128), shift)

    for j, s in enumerate(scan):
        if cfg.probe_variation:
            t, f = j / max(len(scan) - 1, 1), cfg.probe_variation
            varied = make_probe(n, cfg.probe_diameter, cfg.aperture_radius, cfg.photons, 1 + f * (2 * t - 1))
            probe_ft = np.fft.fft2(varied[0].astype(np.complex128)) * np.sqrt(1 + f * np.sin(2 * np.pi * t) / 2)
        c = np.floor(s).astype(int)
        d = s - c
        if cfg.near_field:  # the beam is fixed on the detector, the sample moves: P(r) O(r + s_j)
            psi = probe[0] * moved(obj, -d)[c[0]:c[0] + n, c[1]:c[1] + n]
        else:  # a translation of the exit wave is a phase ramp in the far field: shift the probe, which is smaller;
            # then through the slices, psi_(s+1) = Prop(psi_s) O_(s+1) (one slice: psi = P O)
            psi = np.fft.ifft2(probe_ft * np.exp(-2j * np.pi * (ky * d[0] + kx * d[1])))
            for k, layer in enumerate(obj.reshape((-1,) + obj.shape[-2:])):
                psi = (between.fwd(psi) if k else psi) * layer[c[0]:c[0] + n, c[1]:c[1] + n]
        patterns[j] = np.abs(detector.fwd(psi) if cfg.near_field else np.fft.fft2(psi, norm="ortho")) ** 2
    if cfg.photons:
        patterns = rng.poisson(patterns).astype(np.float32)
    mask = np.ones((n, n), dtype=bool)
    if cfg.bad_pixels:
        bad = rng.choice(n * n, cfg.bad_pixels, replace=False)
        mask.ravel()[bad] = False
        patterns[:, ~mask] = 0
    return patterns, scan, obj, probe, mask


def truth_path(out) -> str:
    root, _ = os.path.splitext(os.fspath(out))
    return f"{root}_truth.h5"


def write_cxi(out, cfg: SimConfig, patterns, scan, mask, block: int = 1024) -> None:
    """CXI (``io.cxi.write``) with centred patterns (near field: the images as they are), sample translations (m)
    = -(probe centre - object centre), geometry, mask, and in the near field the focus distance.

    ``patterns`` : (POSI, N, N), zero frequency at [0, 0]: an array, or anything with ``shape``, ``dtype`` and
    slicing along the first axis; it is written ``block`` patterns at a time (files larger than memory)."""
    n = cfg.probe_size
    pixel, _, _ = cfg.geometry()
    centres = (scan + n / 2 - cfg.object_size / 2) * pixel  # (row, col) metres
    cxi.write(out, patterns, centres[:, 1], centres[:, 0], cfg.energy_ev, cfg.distance_m, cfg.detector_pixel_m,
              bad=~mask if cfg.near_field else np.fft.fftshift(~mask), centre=not cfg.near_field, block=block,
              focus_distance=cfg.focus_distance_m if cfg.near_field else None)


def write(out, cfg: SimConfig) -> str:
    """Simulate and write ``out`` (CXI, with the recorded positions: see :func:`recorded_positions`) and its ground
    truth (the true positions); returns the truth's path."""
    patterns, scan, obj, probe, mask = simulate(cfg)
    write_cxi(out, cfg, patterns, recorded_positions(cfg, scan), mask)
    pixel, wavelength, _ = cfg.geometry()
    truth = truth_path(out)
    write_product(truth, Product(
        core=obj, probe=probe, scan=scan, n=cfg.probe_size, pixel_size=pixel, wavelength=wavelength,
        distance=cfg.distance_m, layer_spacing=cfg.slice_spacing_m if cfg.slices > 1 else None,
        extra={"kind": "ground truth", "photons": cfg.photons, "seed": cfg.seed,
               "geometry": "near field" if cfg.near_field else "far field",
               **({"focus_distance_m": cfg.focus_distance_m} if cfg.near_field else {})}))
    return truth


def initial_probe_guess(cfg: SimConfig, defocus_scale: float = 1.25) -> np.ndarray:
    """The probe a user would start from: the same aperture with 25 % more defocus and no aberrations."""
    return make_probe(cfg.probe_size, cfg.probe_diameter, cfg.aperture_radius, cfg.photons,
                      defocus_scale=defocus_scale, aberrations=False)


def write_velociprobe(stem, cfg: SimConfig, frames, x_m, y_m, files: int = 3) -> tuple[str, str]:
    """A scan in the layout of the APS Velociprobe (33-ID-C), as Ptychodus' ``APS_Velociprobe`` readers parse it:
    ``STEM_master.h5``, an Eiger master file whose ``entry/data/data_00000K`` are external links to ``files`` data
    files ``STEM_data_00000K.h5`` (``frames`` (POSI, N, N) as given: centred, the detector's integer type), the
    detector geometry with its units, and ``STEM_positions.csv`` (x and laser-interferometer y in whole nm,
    trigger = pattern index). ``frames`` may be any array-like sliceable along its first axis. Returns the two
    paths (master, positions)."""
    stem = os.fspath(stem)
    folder, name = os.path.dirname(stem), os.path.basename(stem)
    n = cfg.probe_size
    cuts = np.linspace(0, len(frames), files + 1).astype(int)
    master = f"{stem}_master.h5"
    with h5py.File(master, "w") as f:
        for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]), start=1):
            data = f"{name}_data_{k:06d}.h5"
            with h5py.File(os.path.join(folder, data), "w") as g:
                d = g.create_dataset("entry/data/data", shape=(b - a, n, n), dtype=frames.dtype, chunks=(1, n, n))
                for i in range(a, b, 1024):
                    d[i - a:min(i + 1024, b) - a] = frames[i:min(i + 1024, b)]
            f[f"entry/data/data_{k:06d}"] = h5py.ExternalLink(data, "/entry/data/data")
        det = f.create_group("entry/instrument/detector")
        for key, value, unit in (("detector_distance", cfg.distance_m, "m"), ("x_pixel_size", cfg.detector_pixel_m,
                                 "m"), ("y_pixel_size", cfg.detector_pixel_m, "m"), ("beam_center_x", n // 2,
                                 "pixel"), ("beam_center_y", n // 2, "pixel")):
            det[key] = value
            det[key].attrs["units"] = np.bytes_(unit)  # fixed-length strings, as the Eiger writes them
        spec = det.create_group("detectorSpecific")
        for key, value in (("nimages", len(frames)), ("ntrigger", 1), ("x_pixels_in_detector", n),
                           ("y_pixels_in_detector", n), ("photon_energy", cfg.energy_ev)):
            spec[key] = value
        spec["photon_energy"].attrs["units"] = np.bytes_("eV")
        f["entry/sample/goniometer/chi"] = 0.0
        f["entry/sample/goniometer/chi"].attrs["units"] = np.bytes_("degree")
    positions = f"{stem}_positions.csv"
    rows = [f"0,{round(x * 1e9)},{round(y * 1e9)},0,0,{round(y * 1e9)},0,{j}" for j, (x, y) in
            enumerate(zip(x_m, y_m))]
    with open(positions, "w") as f:
        f.write("# x_nm, y_li_nm, -, -, y_pe_nm, -, trigger\n" + "\n".join(rows) + "\n")
    return master, positions
