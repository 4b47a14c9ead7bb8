"""Reconstruction settings: one frozen dataclass, loadable from TOML and overridable on the command line."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ALGORITHMS = ("rpie", "dm", "lsqml")
BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
BATCHINGS = ("random", "compact")


@dataclass(frozen=True)
class ReconConfig:
    """Settings of one reconstruction. In TOML they sit under ``[reconstruct]`` with the same names."""

    algorithm: str = "rpie"
    """'rpie' (Maiden, Johnson & Li 2017), 'dm' (Thibault et al. 2009) or 'lsqml' (Odstrcil et al. 2018)."""
    epochs: int = 50
    """Passes over all scan positions."""
    batch_size: int = 0
    """Positions processed together; 0 picks the algorithm's default (rPIE 16, LSQML 32 and with several slices 64,
    DM 64 for memory only)."""
    batching: str = "random"
    """'random' (a new random split every epoch, stratified over a few spatial cells so that on 2, 4, ... ranks
    every tile holds an even share of each LSQML batch) or 'compact' (spatially compact groups, fixed)."""
    probe_modes: int = 1
    """Incoherent probe modes K (mixed state); extra modes start at 10 % power and are orthogonalised."""
    opr_modes: int = 0
    """Variable probe modes (orthogonal probe relaxation, ptyhpc.opr): the dominant probe mode may vary from
    position to position along these many modes; 0 = one probe for the whole scan. rPIE and LSQML."""
    opr_start: int = 20
    """First epoch in which the variable modes and their weights are updated (before it they keep their small
    starting values: the object and the probe settle first, as for ``position_start``). Chosen on the small sets,
    the standard set (both algorithms; scripts/bench_opr.py --starts, benchmarks/opr_starts.json,
    opr_standard_starts.json, opr_standard_seed7.json) and the real Siemens star's FRC (from epoch 30 two of three
    batch orders lost the low frequencies); README, "A probe that varies along the scan"."""
    update_probe: bool = True
    """Refine the probe (from epoch ``probe_start``)."""
    probe_start: int = 0
    """First epoch in which the probe is updated."""
    alpha: float = 0.1
    """rPIE object regularisation alpha in [0, 1] (Maiden 2017, Eq. 6): how strongly the step is held back where
    the object is weakly lit (Maiden's and Pty-chi's default); from epoch ``alpha_ramp`` on when that is > 0."""
    alpha_start: float = 0.02
    """rPIE's alpha in the first epoch when ``alpha_ramp`` > 0; it then rises linearly to ``alpha`` over
    ``alpha_ramp`` epochs. A small alpha takes large steps where few positions light the object, which converge
    fast there but carry the noise of the random batches with them: the error stops falling at a level the larger
    alpha avoids. Rising from small to 0.1 keeps the fast start and the low end: on one rank, on the accuracy
    family after 50 epochs no member more than 2.2 % worse than 0.1 throughout and up to 0.68x of it, every member
    no worse than Pty-chi. Not the default: on several ranks it needs the overlaps averaged after every batch
    (:meth:`at_epoch`), which made its 50 epochs 16 % slower on 2 ranks for an error 1 % lower after 100 epochs
    (scripts/bench_scaling.py; README, "rPIE's alpha: a ramp")."""
    alpha_ramp: int = 0
    """Epochs over which rPIE's alpha rises from ``alpha_start`` to ``alpha``; 0 = ``alpha`` throughout (50 is
    what the family was measured with). On several ranks the tiles' overlaps are averaged after every batch while
    alpha rises (``sync_every`` 1, unless it is 0): averaged every 4th batch, the ranks' large early steps in the
    overlaps left 4 ranks 1.11x of one rank's error on the small test set, after every batch 1.08x (1.08x with 0.1
    throughout)."""
    beta: float = 1.0
    """rPIE probe regularisation; 1 gives the ePIE-like step normalised by max |O|^2, robust on real data."""
    noise: str = "gaussian"
    """Noise model of the misfit and of LSQML's far-field step: 'gaussian' (amplitude) or 'poisson'."""
    dm_power_bound: float = 1.0
    """DM: relax the modulus projection to the noise (Thibault & Guizar-Sicairos 2012): a pattern whose mean squared
    amplitude misfit is within this many times what Poisson noise gives is left alone, others are moved onto that
    bound; 0 = the plain projection, which diverges on noisy data (data in photon counts)."""
    dm_inner: int = 1
    """DM: object/probe alternations per iteration (overlap-projection inner loop)."""
    lsqml_beta: float = 0.9
    """LSQML: damping of the optimal step (Odstrcil 2018, Eq. 27)."""
    lsqml_delta: float = 0.0
    """LSQML: delta_O and delta_P of Eq. 25 relative to the largest illumination (the preconditioner's damping;
    rPIE's ``alpha`` plays this part there); 0 = the default in force (``delta``). Larger damps the object where it
    is weakly lit: it lowers the error of low-dose scans and slows the convergence of high-dose ones
    (scripts/bench_lsqml_delta.py)."""
    object_clip: float = 0.0
    """If > 0, clip the object amplitude to at most this value after every update (e.g. 1.0: no gain)."""
    probe_power: bool = False
    """Hold the probe's total power at the mean measured intensity per pattern after every epoch."""
    sync_every: int = 4
    """rPIE on several ranks: average the overlapping strips of the tiles with the neighbours every k batches and
    at the end of every epoch (0: only there), from the end of alpha's ramp on (every batch before it, see
    ``alpha_ramp``). The probes are averaged after every batch whatever k is. scripts/bench_scaling.py measures
    error and time for k = 1, 4 and 16."""
    subpixel: str = "auto"
    """Sub-pixel shift of the probe: 'bilinear' (interpolation, cheapest; blurs by up to half a pixel), 'fourier'
    (exact phase ramp, one FFT pair more per batch) or 'auto' (fourier with position correction, which it makes
    unbiased, and in the near field, whose probe has structure down to the pixel; else bilinear)."""
    correct_positions: bool = False
    """Refine every scan position from the data (rPIE and LSQML; see ptyhpc.positions)."""
    position_start: int = 10
    """First epoch in which positions are corrected (the object needs a few epochs to show features to align)."""
    position_step_px: float = 0.5
    """Largest move of one position in one epoch, object pixels."""
    position_limit_px: float = 10.0
    """Largest correction of a position from its recorded place, object pixels; the tiles carry this margin."""
    position_affine: bool = False
    """Let the corrections change the scan's affine geometry (scale, rotation, shear) as well. Off, the affine part
    of the corrections is removed every epoch: random errors and drifts that are not affine are corrected, the
    recorded geometry is kept on average. Free, the geometry creeps in scale on the standard set (the scale and
    defocus ambiguity; ``scripts/bench_positions.py --set position_affine=true`` prints it): switch it on when the
    stage's scale or rotation is known to be off."""
    slices: int = 1
    """Multislice: the object is this many slices (S, H, W), ``slice_spacing_m`` apart along the beam (thick
    samples; rPIE and LSQML). 1: one thin transmission function."""
    slice_spacing_m: float = 0.0
    """Multislice: distance between consecutive slices, metres (must be > 0 with slices > 1)."""
    slice_regularization: float = 0.1
    """Multislice: after every epoch this fraction of the slices' differences in the lateral frequencies that one
    slice spacing of propagation hardly changes is removed (``physics.share_unresolved``; 0: none, 1: those
    frequencies shared equally). The data barely split them, and left free the slices drift apart in them."""
    near_field: bool = False
    """Near-field (Fresnel) ptychography: the patterns are images of the wave on the detector, propagated by the
    angular spectrum over the (Fresnel-scaled) distance instead of Fourier-transformed (see
    ``io.dataset.in_near_field``). A file that states its focus distance is read in the near field anyway."""
    focus_distance_m: float = 0.0
    """Near field in a cone beam: the focus-to-sample distance z1, metres (the magnification is (z1 + z2) / z1,
    z2 the detector distance); 0 = a parallel beam, or the file's own value."""
    device: str = "auto"
    """'auto' (the GPU when CuPy finds a usable one, else the CPU), 'gpu' (an error without one) or 'cpu'."""
    fft: str = "auto"
    """CPU FFT library: 'auto' (FFTW with the plans ``ptyhpc plan-fft`` measured once on this machine, which
    ``scripts/setup.sh`` runs, and scipy.fft for any other transform; without pyFFTW or those plans, scipy.fft
    alone), 'scipy' (pocketfft alone) or 'fftw' (FFTW for every transform, planned at run time by timing, so two
    runs can differ in the last bit). 'auto' and 'scipy' compute the same bits in every run of a machine. The GPU
    uses cuFFT whatever this says."""
    precision: str = "complex64"
    """'complex64' or 'complex128'."""
    seed: int = 0
    """Seed of the batch shuffling and of the extra probe modes."""

    def __post_init__(self):
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), type(f.default))
        checks = [
            (self.algorithm in ALGORITHMS, f"algorithm must be one of {ALGORITHMS}, not {self.algorithm!r}"),
            (self.epochs >= 0, f"epochs must be >= 0, not {self.epochs}"),
            (self.batch_size >= 0, f"batch_size must be >= 0, not {self.batch_size}"),
            (self.batching in BATCHINGS, f"batching must be one of {BATCHINGS}, not {self.batching!r}"),
            (self.probe_modes >= 1, f"probe_modes must be >= 1, not {self.probe_modes}"),
            (self.opr_modes >= 0, f"opr_modes must be >= 0, not {self.opr_modes}"),
            (not self.opr_modes or self.algorithm != "dm", "opr_modes needs algorithm 'rpie' or 'lsqml'"),
            (0 <= self.alpha <= 1, f"alpha must lie in [0, 1], not {self.alpha}"),
            (0 <= self.alpha_start <= 1, f"alpha_start must lie in [0, 1], not {self.alpha_start}"),
            (self.alpha_ramp >= 0, f"alpha_ramp must be >= 0 (0: alpha throughout), not {self.alpha_ramp}"),
            (0 <= self.beta <= 1, f"beta must lie in [0, 1], not {self.beta}"),
            (self.noise in ("gaussian", "poisson"), f"noise must be 'gaussian' or 'poisson', not {self.noise!r}"),
            (self.dm_inner >= 1, f"dm_inner must be >= 1, not {self.dm_inner}"),
            (self.dm_power_bound >= 0, f"dm_power_bound must be >= 0 (0: plain projection), not {self.dm_power_bound}"),
            (0 < self.lsqml_beta <= 1, f"lsqml_beta must lie in (0, 1], not {self.lsqml_beta}"),
            (self.lsqml_delta >= 0, f"lsqml_delta must be >= 0 (0: the default), not {self.lsqml_delta}"),
            (self.probe_start >= 0, f"probe_start must be >= 0, not {self.probe_start}"),
            (self.object_clip >= 0, f"object_clip must be >= 0 (0: no clip), not {self.object_clip}"),
            (self.seed >= 0, f"seed must be >= 0, not {self.seed}"),
            (self.device in ("cpu", "gpu", "auto"), f"device must be 'cpu', 'gpu' or 'auto', not {self.device!r}"),
            (self.fft in ("auto", "scipy", "fftw"), f"fft must be 'auto', 'scipy' or 'fftw', not {self.fft!r}"),
            (self.precision in ("complex64", "complex128"),
             f"precision must be 'complex64' or 'complex128', not {self.precision!r}"),
            (self.sync_every >= 0, f"sync_every must be >= 0, not {self.sync_every}"),
            (self.subpixel in ("auto", "bilinear", "fourier"),
             f"subpixel must be 'auto', 'bilinear' or 'fourier', not {self.subpixel!r}"),
            (self.slices >= 1, f"slices must be >= 1, not {self.slices}"),
            (self.slices == 1 or self.slice_spacing_m > 0, "slice_spacing_m must be > 0 with slices > 1"),
            (0 <= self.slice_regularization <= 1, f"slice_regularization must be in [0, 1], not "
                                                   f"{self.slice_regularization}"),
            (self.slices == 1 or self.algorithm != "dm", "slices > 1 needs algorithm 'rpie' or 'lsqml'"),
            (self.slices == 1 or not (self.correct_positions or self.opr_modes),
             "slices > 1 is not built with correct_positions or opr_modes yet"),
            (self.focus_distance_m >= 0, f"focus_distance_m must be >= 0 (0: parallel beam), not {self.focus_distance_m}"),
            (self.position_start >= 0, f"position_start must be >= 0, not {self.position_start}"),
            (self.opr_start >= 0, f"opr_start must be >= 0, not {self.opr_start}"),
            (self.position_step_px > 0, f"position_step_px must be > 0, not {self.position_step_px}"),
            (self.position_limit_px > 0, f"position_limit_px must be > 0, not {self.position_limit_px}"),
            (not (self.correct_positions and self.near_field),
             "correct_positions is not built for the near field yet (its position gradient moves the object under a "
             "fixed beam, not the probe)"),
            (not self.correct_positions or self.algorithm != "dm",
             "correct_positions needs algorithm 'rpie' or 'lsqml' (DM's exit waves are not a descent step)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"setting {message}")

    @property
    def batch(self) -> int:
        """The batch size in force (the algorithm's default when ``batch_size`` is 0). Multislice LSQML takes 64:
        on the seven thick sets of scripts/bench_slice_regularization.py the worse slice's error averaged 0.1205
        against 0.1230 with 32 (largest 0.1274 against 0.1335, better on six of seven), the epoch was faster and the
        halo traffic half (its per-rank batch share divides over the ranks like the positions)."""
        if self.batch_size:
            return self.batch_size
        if self.algorithm == "lsqml" and self.slices > 1:
            return 64
        return {"rpie": 16, "lsqml": 32, "dm": 64}[self.algorithm]

    @property
    def delta(self) -> float:
        """LSQML's damping in force (the default when ``lsqml_delta`` is 0): 0.03 with one slice, 0.01 with
        several. With one slice 0.03 against 0.01 gave 0.84-0.99x the object error on ten of twelve far-field sets
        of scripts/bench_lsqml_delta.py and 1.18x on one (large probe, 60 % overlap, 1e7 photons: the data carry
        the weakly lit parts there), and 1.00-1.01x on the simulated near-field family. Several slices keep the
        0.01 with which the family of thick sets chose the slice regularisation and the batch (on the thick test
        set 0.03 leaves the slices' errors as they are; not measured on that family)."""
        if self.lsqml_delta:
            return self.lsqml_delta
        return 0.03 if self.slices == 1 else 0.01

    @property
    def shift(self) -> str:
        """The sub-pixel shift in force ('bilinear' or 'fourier')."""
        if self.subpixel != "auto":
            return self.subpixel
        return "fourier" if self.correct_positions or self.near_field else "bilinear"

    def at_epoch(self, epoch: int) -> "ReconConfig":
        """The settings in force in epoch ``epoch`` (0 the first): rPIE's ``alpha`` on its ramp (see
        ``alpha_start``) and the overlaps averaged after every batch (see ``alpha_ramp``); these settings
        themselves from the ramp's end on."""
        if epoch >= self.alpha_ramp:
            return self
        return dataclasses.replace(self, alpha=self.alpha_start + (self.alpha - self.alpha_start) * epoch /
                                   self.alpha_ramp, sync_every=min(self.sync_every, 1))

    def replace(self, **changes) -> "ReconConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_toml(cls, path, base: "ReconConfig | None" = None) -> "ReconConfig":
        """Load ``[reconstruct]`` (or the top level) of a TOML file over ``base`` (default: the defaults); unknown
        keys, wrong types and values out of range are errors that name the file and the key."""
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f)
        except OSError as e:
            raise ValueError(f"{path}: -: cannot read the settings file ({e.strerror})") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: -: TOML syntax error: {e}") from None
        table = table.get("reconstruct", table)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: reconstruct: must be a table of settings, not {table!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"{path}: reconstruct: unknown setting(s) {unknown}; known: {sorted(known)}")
        try:
            return dataclasses.replace(base or cls(), **table)
        except ValueError as e:
            raise ValueError(f"{path}: reconstruct: {e}") from None

    @classmethod
    def parse(cls, key: str, text: str):
        """The value of setting ``key`` from its command-line text (``--set KEY=VALUE``), typed as the field is.
        Booleans accept only true/false, yes/no, on/off and 1/0."""
        field = cls.__dataclass_fields__.get(key)
        if field is None:
            raise ValueError(f"--set {key}={text}: unknown setting {key!r}; known: {sorted(cls.__dataclass_fields__)}")
        kind = type(field.default)
        word = text.strip().lower()
        if kind is bool:
            if word in BOOLEAN_WORDS:
                return BOOLEAN_WORDS[word]
            allowed = "true/false, yes/no, on/off or 1/0"
        else:
            try:
                return kind(text.strip())
            except ValueError:
                allowed = {int: "an integer", float: "a number", str: "text"}[kind]
        raise ValueError(f"--set {key}={text}: setting {key} must be {allowed}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_type(name: str, value, kind: type) -> None:
    """Raise ValueError unless ``value`` fits a field whose default is of type ``kind`` (an int is a float; a bool
    is neither an int nor a float)."""
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        what = {bool: "true or false", int: "an integer", float: "a number", str: "text"}[kind]
        raise ValueError(f"setting {name} = {value!r}: must be {what}")
