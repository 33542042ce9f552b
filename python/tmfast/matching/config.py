"""Every option of ``tmfast match`` in one validated, immutable object.

Field names follow ``pytom_match_template.py``'s flags with units appended
(``--low-pass`` -> ``low_pass_a``). A TOML file (``--config``) may set any field, by
its field name or by its flag name (``low-pass``, ``volume-split``...); command-line
flags override the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from tmfast.errors import ConfigError, FormatError, TmfastError
from tmfast.metadata import TiltSeriesMetadata

__all__ = ["BACKEND_CHOICES", "RUN_OPTION_KEYS", "MatchConfig"]

BACKEND_CHOICES = ("auto", "cpu", "cuda", "opencl")

#: Flag names (without dashes) that differ from the field names.
_ALIASES = {
    "volume_split": "volume_split_xyz",
    "low_pass": "low_pass_a",
    "high_pass": "high_pass_a",
    "particle_diameter": "particle_diameter_a",
    "voxel_size_angstrom": "voxel_size_a",
    "voxel_size": "voxel_size_a",
    "spherical_aberration": "spherical_aberration_mm",
    "voltage": "voltage_kv",
    "phase_shift": "phase_shift_deg",
    "gpu_ids": "gpu_ids",
    "destination": "destination",
    "output_dir": "destination",
    # read like -a with a file: the tilt-angle readers take the first column
    "tilt_angles_first_column": "tilt_angles",
}

#: Keys a config file may set that belong to the run, not to the search: the
#: command's ``--overwrite``, ``--log``, ``-q/--quiet`` and ``--verbose`` (read by
#: :meth:`MatchConfig.run_options_from_toml`; flags on the command line win).
RUN_OPTION_KEYS = ("overwrite", "log", "quiet", "verbose")

#: The CTF constants a metadata mapping may leave to the options.
_CTF_CONSTANTS = ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast")

#: Fields that do not change the maps (left out of the checkpoint hash).
_NOT_RESULT_FIELDS = frozenset(
    {
        "destination",
        "tomo_id",
        "gpu_ids",
        "backend",
        "checkpoint_every",
        "checkpoint_interval_s",
        "half_precision",
        # the handedness applied (flag or metadata) goes into the checkpoint key
        # instead (tmfast.matching.engine), so earlier checkpoints stay valid
        "defocus_handedness",
    }
)


#: Largest plausible --voltage (kV) and --spherical-aberration (mm): above them the
#: value is a unit slip (V, µm).
MAX_VOLTAGE_KV = 1000.0
MAX_SPHERICAL_ABERRATION_MM = 20.0

#: Fields that may name an input file (checkpoints compare the files, not names).
_INPUT_FILE_FIELDS = (
    "template",
    "tomogram",
    "mask",
    "tomogram_mask",
    "tilt_angles",
    "defocus",
    "dose_accumulation",
    "relion5_tomograms_star",
    "angular_search",
)


_NOT_FLAGS = ("voxel_size", "output_dir", "tilt_angles_first_column")


def flag_name(field: str) -> str:
    """The ``tmfast match`` flag of a :class:`MatchConfig` field (``low_pass_a`` ->
    ``--low-pass``); fields without a flag keep their name."""
    for flag, target in _ALIASES.items():
        if target == field and flag not in _NOT_FLAGS:
            return "--" + flag.replace("_", "-")
    if field in ("tomo_id", "metadata", "checkpoint_interval_s"):
        return field
    return "--" + field.replace("_", "-")


def _opt_path(value: Any) -> Path | None:
    return None if value is None or value == "" else Path(value)


def _file_stem(path: Path) -> str:
    """The tomogram id of a file name: without its volume extension and a
    compression suffix (``tomo.mrc.gz`` -> ``tomo``; mrcfile reads gzip and bzip2
    files), keeping other dots (``TS.01.mrc`` -> ``TS.01``)."""
    name = path.name
    for ext in (".gz", ".bz2"):
        if name.lower().endswith(ext) and len(name) > len(ext):
            name = name[: -len(ext)]
            break
    else:
        ext = ""
    for vol_ext in (".mrc", ".rec", ".map", ".st"):
        if name.lower().endswith(vol_ext):
            return name[: -len(vol_ext)]
    # a compression suffix was the extension (TS.01.gz -> TS.01)
    return name if ext else path.stem


def _opt_pos(name: str, value: Any, flag: str) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} {value!r}: not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{flag} {value!r}: must be a positive number ({name})")
    return v


def _number(flag: str, value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as an int or float; ConfigError (not ValueError) for e.g. "x"."""
    if isinstance(value, bool):
        raise ConfigError(f"{flag} {value!r}: give a number, not true/false")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{flag} {value!r}: not an integer")
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{flag} {value!r}: not {what}") from None


def _switch(flag: str, value: Any) -> bool:
    """An on/off option: true/false (or 1/0); a string such as "false" is refused."""
    if value is None or isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{flag} {value!r}: give true or false (no quotes in TOML)")


def _angular_step(step: float, given: Any) -> float:
    """Validate a numeric ``--angular-search`` (angle_set's limits, [0.05, 360] deg)."""
    if not (math.isfinite(step) and 0.05 <= step <= 360.0):
        raise ConfigError(
            f"--angular-search {given}: angular step {step}° is outside [0.05, 360]; "
            "give a step in degrees or an angle file"
        )
    return step


def _range(name: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        start, end = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--{name.replace('_', '-')} {value!r}: give two integers START END"
        ) from None
    if start < 0 or end <= start:
        raise ConfigError(
            f"--{name.replace('_', '-')} {start} {end}: need 0 <= START < END "
            "(voxel indices, END exclusive)"
        )
    return start, end


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatchConfig:
    """Options of one template-matching run (see ``tmfast match --help``).

    Attributes
    ----------
    template, tomogram, mask
        MRC files; template and mask share a cubic box. Each may be None when the
        array is given to :func:`~tmfast.matching.engine.match_template` instead.
    tomo_id
        Name of the tomogram, used to name the outputs; default: the tomogram's file
        stem (``"tomogram"`` without a file).
    metadata
        Tilt-series metadata (tilt angles, defocus with its handedness, dose, CTF
        parameters), e.g. from an importer; when given it replaces
        ``tilt_angles``/``defocus``/``dose_accumulation``. A mapping (e.g. a TOML
        ``[match.metadata]`` table) with defocus but without ``voltage_kv``,
        ``spherical_aberration_mm`` or ``amplitude_contrast`` takes them from these
        options; a ``TiltSeriesMetadata`` with defocus holds them all already.
    destination
        Output directory for ``{tomo_id}_scores.mrc``, ``_angles.mrc``, ``_job.json``.
    non_spherical_mask
        Rotate the mask with the template and recompute the local sigma per rotation.
    particle_diameter_a
        Particle diameter in Å; sets the angular step by the Crowther criterion when
        ``angular_search`` is not given.
    angular_search
        Angular step in degrees, or a file of ZXZ Euler angles in radians.
    z_axis_rotational_symmetry
        n-fold symmetry about z (keeps rotations with ``phi < 2 pi / n``).
    volume_split_xyz
        Number of sub-volumes along x, y, z.
    search_x, search_y, search_z
        ``(start, end)`` voxel ranges (end exclusive) of the search region.
    tomogram_mask
        MRC the size of the tomogram; voxels ``<= 0`` are excluded.
    tilt_angles
        ``(min, max)`` degrees for a binary wedge, or a ``.tlt``/``.rawtlt`` file.
    per_tilt_weighting
        Tilt-weighted wedge (cos(tilt), CTF and dose per tilt).
    voxel_size_a
        Override of the header voxel size in Å.
    low_pass_a, high_pass_a
        Gaussian band-pass resolutions in Å.
    dose_accumulation
        File of accumulated dose (e⁻/Å²) per tilt.
    defocus
        Defocus in µm (one value) or a file (``.txt`` µm per tilt, IMOD ``.defocus``).
    amplitude_contrast, spherical_aberration_mm, voltage_kv, phase_shift_deg
        CTF parameters (fraction, mm, kV, degrees).
    tomogram_ctf_model
        ``"phase-flip"`` to weight the template with ``|CTF|``.
    spectral_whitening
        Whitening filter estimated from the tomogram.
    random_phase_correction, rng_seed
        Phase-randomised noise-template correction and its seed (random if None).
    half_precision
        Write the score map as float16.
    relion5_tomograms_star
        RELION5 ``tomograms.star``: tilt angles, CTF, dose and voxel size from it.
    gpu_ids, backend
        Devices and compute backend (``auto``, ``cpu``, ``cuda``, ``opencl``).
    checkpoint_every, checkpoint_interval_s
        Write a checkpoint every this many rotations and at least every this many
        seconds (0 disables checkpoints).
    defocus_handedness
        pytom's ``--defocus-handedness``: -1, 1, 0 (off) or None (the metadata's,
        from RELION5 or AreTomo3; else off). With per-tilt weighting and per-tilt
        defocus, each sub-volume's template CTF uses the defocus at its centre
        (:mod:`tmfast.filters.defocus_gradient`).
    """

    template: Path | None = None
    tomogram: Path | None = None
    mask: Path | None = None
    tomo_id: str = ""
    metadata: TiltSeriesMetadata | None = None
    destination: Path = Path(".")
    non_spherical_mask: bool = False
    particle_diameter_a: float | None = None
    angular_search: float | str | None = None
    z_axis_rotational_symmetry: int = 1
    volume_split_xyz: tuple[int, int, int] = (1, 1, 1)
    search_x: tuple[int, int] | None = None
    search_y: tuple[int, int] | None = None
    search_z: tuple[int, int] | None = None
    tomogram_mask: Path | None = None
    tilt_angles: tuple[float, float] | Path | None = None
    per_tilt_weighting: bool = False
    voxel_size_a: float | None = None
    low_pass_a: float | None = None
    high_pass_a: float | None = None
    dose_accumulation: Path | None = None
    defocus: float | Path | None = None
    amplitude_contrast: float | None = None
    spherical_aberration_mm: float | None = None
    voltage_kv: float | None = None
    phase_shift_deg: float = 0.0
    tomogram_ctf_model: str | None = None
    spectral_whitening: bool = False
    random_phase_correction: bool = False
    rng_seed: int | None = None
    half_precision: bool = False
    relion5_tomograms_star: Path | None = None
    gpu_ids: tuple[int, ...] | None = None
    backend: str = "auto"
    checkpoint_every: int = 2000
    checkpoint_interval_s: float = 300.0
    defocus_handedness: int | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        for name in ("template", "tomogram", "mask"):
            s(self, name, _opt_path(getattr(self, name)))
        tid = "" if self.tomo_id is None else str(self.tomo_id)
        s(self, "_tomo_id_derived", not tid)
        if not tid:
            tid = "tomogram" if self.tomogram is None else _file_stem(self.tomogram)
        elif "/" in tid or tid in (".", ".."):
            raise ConfigError(f"tomo_id {tid!r}: must be a plain name (no '/')")
        s(self, "tomo_id", tid)
        md = self.metadata
        if isinstance(md, dict):
            md = dict(md)
            if md.get("defocus_um") is not None:
                # CTF constants the mapping lacks come from the options (documented;
                # a TiltSeriesMetadata with defocus must hold them all)
                for key in _CTF_CONSTANTS:
                    if md.get(key) is None and getattr(self, key) is not None:
                        md[key] = getattr(self, key)
            try:
                md = TiltSeriesMetadata.from_dict(md)
            except TmfastError:
                raise
            except (TypeError, ValueError) as exc:  # e.g. tilt_angles_deg = "x"
                raise ConfigError(
                    f"metadata: {exc}; give numbers (lists of one value per tilt)"
                ) from None
        if md is not None and not isinstance(md, TiltSeriesMetadata):
            raise ConfigError(
                f"metadata {md!r}: give a TiltSeriesMetadata or its to_dict() mapping"
            )
        s(self, "metadata", md)
        s(self, "destination", Path(self.destination))
        for name in ("tomogram_mask", "dose_accumulation", "relion5_tomograms_star"):
            s(self, name, _opt_path(getattr(self, name)))
        s(
            self,
            "particle_diameter_a",
            _opt_pos("Å", self.particle_diameter_a, "--particle-diameter"),
        )
        s(
            self,
            "voxel_size_a",
            _opt_pos("Å", self.voxel_size_a, "--voxel-size-angstrom"),
        )
        s(self, "low_pass_a", _opt_pos("Å", self.low_pass_a, "--low-pass"))
        s(self, "high_pass_a", _opt_pos("Å", self.high_pass_a, "--high-pass"))
        if (
            self.low_pass_a is not None
            and self.high_pass_a is not None
            and self.high_pass_a <= self.low_pass_a
        ):
            raise ConfigError(
                f"--high-pass {self.high_pass_a} Å must be a longer wavelength than "
                f"--low-pass {self.low_pass_a} Å"
            )
        s(
            self,
            "spherical_aberration_mm",
            _opt_pos("mm", self.spherical_aberration_mm, "--spherical-aberration"),
        )
        s(self, "voltage_kv", _opt_pos("kV", self.voltage_kv, "--voltage"))
        # a unit slip (V for kV, µm for mm) would run with a meaningless CTF
        if self.voltage_kv is not None and self.voltage_kv > MAX_VOLTAGE_KV:
            raise ConfigError(
                f"--voltage {self.voltage_kv:g}: beyond any electron microscope; "
                "give kV (e.g. 300), not V"
            )
        cs = self.spherical_aberration_mm
        if cs is not None and cs > MAX_SPHERICAL_ABERRATION_MM:
            raise ConfigError(
                f"--spherical-aberration {cs:g}: beyond any objective lens; give mm "
                "(e.g. 2.7), not µm"
            )
        # angular search
        a = self.angular_search
        if isinstance(a, bool):
            raise ConfigError("--angular-search must be a step in degrees or a file")
        if isinstance(a, int | float):
            s(self, "angular_search", _angular_step(float(a), a))
        elif isinstance(a, os.PathLike):
            s(self, "angular_search", str(a))
        elif a is not None and not isinstance(a, str):
            raise ConfigError(f"--angular-search {a!r}: a step in degrees or a file")
        if isinstance(self.angular_search, str):
            try:
                step = float(self.angular_search)
            except ValueError:
                step = None  # a file name, checked when the angles are read
            if step is not None:
                s(self, "angular_search", _angular_step(step, self.angular_search))
        if self.angular_search is None and self.particle_diameter_a is None:
            raise ConfigError(
                "give --angular-search (degrees or an angle file) or "
                "--particle-diameter (Crowther step)"
            )
        sym = _number(
            "--z-axis-rotational-symmetry", self.z_axis_rotational_symmetry, int
        )
        if sym < 1:
            raise ConfigError(f"--z-axis-rotational-symmetry {sym}: must be >= 1")
        s(self, "z_axis_rotational_symmetry", sym)
        try:
            split = tuple(int(v) for v in self.volume_split_xyz)
        except (TypeError, ValueError):
            raise ConfigError(
                f"--volume-split {self.volume_split_xyz!r}: give three integers X Y Z"
            ) from None
        if len(split) != 3 or min(split) < 1:
            raise ConfigError(
                f"--volume-split {self.volume_split_xyz!r}: give three integers >= 1"
            )
        s(self, "volume_split_xyz", split)
        for name in ("search_x", "search_y", "search_z"):
            s(self, name, _range(name, getattr(self, name)))
        # tilts
        t = self.tilt_angles
        if t is not None:
            if isinstance(t, str | os.PathLike):
                s(self, "tilt_angles", Path(t))
            else:
                try:
                    vals = list(t)
                except TypeError:  # e.g. one number in a TOML file
                    raise ConfigError(
                        f"--tilt-angles {t!r}: give MIN MAX in degrees or a "
                        ".tlt/.rawtlt file"
                    ) from None
                if len(vals) == 1 and isinstance(vals[0], str | os.PathLike):
                    s(self, "tilt_angles", Path(vals[0]))
                else:
                    try:
                        lo, hi = (float(v) for v in vals)
                    except (TypeError, ValueError):
                        raise ConfigError(
                            f"--tilt-angles {t!r}: give MIN MAX in degrees or a "
                            ".tlt/.rawtlt file"
                        ) from None
                    if not (-90 <= lo <= hi <= 90):
                        raise ConfigError(
                            f"--tilt-angles {lo} {hi}: need -90 <= MIN <= MAX <= 90"
                        )
                    s(self, "tilt_angles", (lo, hi))
        d = self.defocus
        if d is not None and not isinstance(d, int | float):
            try:
                d = float(str(d))
            except ValueError:
                d = Path(d)  # type: ignore[arg-type]
            s(self, "defocus", d)
        if self.defocus is not None:
            missing = [
                flag
                for flag, v in (
                    ("--amplitude-contrast", self.amplitude_contrast),
                    ("--spherical-aberration", self.spherical_aberration_mm),
                    ("--voltage", self.voltage_kv),
                )
                if v is None
            ]
            if missing:
                raise ConfigError("--defocus needs " + ", ".join(missing))
        if self.amplitude_contrast is not None:
            ac = _number("--amplitude-contrast", self.amplitude_contrast, float)
            if not 0.0 <= ac < 1.0:
                raise ConfigError(f"--amplitude-contrast {ac}: a fraction in [0, 1)")
            s(self, "amplitude_contrast", ac)
        phase_deg = _number("--phase-shift", self.phase_shift_deg, float)
        if not math.isfinite(phase_deg):
            raise ConfigError(f"--phase-shift {phase_deg}: give a finite angle in °")
        s(self, "phase_shift_deg", phase_deg)
        if self.tomogram_ctf_model not in (None, "phase-flip"):
            raise ConfigError(
                f"--tomogram-ctf-model {self.tomogram_ctf_model!r}: only 'phase-flip'"
            )
        if self.rng_seed is not None:
            seed = _number("--rng-seed", self.rng_seed, int)
            if seed < 0:
                raise ConfigError(f"--rng-seed {seed}: must be >= 0")
            s(self, "rng_seed", seed)
        if self.gpu_ids is not None:
            try:
                given_ids = list(self.gpu_ids)
            except TypeError:  # e.g. one number in a TOML file
                raise ConfigError(
                    f"--gpu-ids {self.gpu_ids!r}: give a list of device indices, "
                    "e.g. [0, 1]"
                ) from None
            ids = tuple(_number("--gpu-ids", i, int) for i in given_ids)
            if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
                raise ConfigError(
                    f"--gpu-ids {list(ids)}: give distinct non-negative device indices"
                )
            s(self, "gpu_ids", ids)
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(
                f"--backend {self.backend!r}: choose one of "
                + ", ".join(BACKEND_CHOICES)
            )
        every = _number("--checkpoint-every", self.checkpoint_every, int)
        interval_s = _number("checkpoint_interval_s", self.checkpoint_interval_s, float)
        if every < 0:
            raise ConfigError(
                "--checkpoint-every must be >= 0 (0 disables checkpoints)"
            )
        if not math.isfinite(interval_s) or interval_s < 0:
            raise ConfigError(
                f"checkpoint_interval_s {interval_s}: give seconds >= 0 (0: "
                "checkpoints by rotation count only)"
            )
        s(self, "checkpoint_every", every)
        hand = self.defocus_handedness
        if hand is not None:
            if isinstance(hand, bool) or hand not in (-1, 0, 1):
                raise ConfigError(
                    f"--defocus-handedness {hand!r}: give -1, 0 or 1 (pytom's "
                    "convention)"
                )
            s(self, "defocus_handedness", int(hand))
        s(self, "checkpoint_interval_s", interval_s)
        for name in (
            "non_spherical_mask",
            "per_tilt_weighting",
            "spectral_whitening",
            "random_phase_correction",
            "half_precision",
        ):
            flag = "--" + name.replace("_", "-")
            s(self, name, _switch(flag, getattr(self, name)))

    def require_files(self, *, except_: frozenset[str] = frozenset()) -> None:
        """Raise ConfigError if ``template``, ``tomogram`` or ``mask`` is missing.

        Parameters
        ----------
        except_
            Names given as arrays instead of files.
        """
        for name in ("tomogram", "template", "mask"):
            if name not in except_ and getattr(self, name) is None:
                raise ConfigError(
                    f"{name} is required: give its MRC file (--{name} on the command "
                    f"line), or pass {name}= as an array to match_template"
                )

    def with_updates(self, **changes: Any) -> MatchConfig:
        """Return a validated copy with ``changes`` applied.

        A ``tomo_id`` derived from the tomogram's file name follows a new tomogram.
        """
        if "tomo_id" not in changes and getattr(self, "_tomo_id_derived", False):
            changes["tomo_id"] = ""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "tomo_id" and getattr(self, "_tomo_id_derived", False):
                v = ""
            elif isinstance(v, TiltSeriesMetadata):
                v = v.to_dict()
            elif isinstance(v, Path):
                v = str(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def result_fields(self) -> dict[str, Any]:
        """The options that determine the maps, as JSON values (for checkpoints).

        Input files (template, tomogram, masks, tilt/defocus/dose files, RELION5
        STAR, angle file) are given as ``[absolute path, size, mtime_ns]``: a rerun
        from another working directory matches, an edited file does not.
        """
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_RESULT_FIELDS}
        for key in _INPUT_FILE_FIELDS:
            value = d.get(key)
            if not isinstance(value, str) or not value:
                continue  # None, a number (defocus, angular step) or MIN MAX
            if key == "angular_search":
                try:
                    float(value)
                    continue  # a step in degrees
                except ValueError:
                    pass
            p = Path(value)
            st = p.stat() if p.exists() else None
            d[key] = [
                str(p.resolve()),
                st.st_size if st else None,
                st.st_mtime_ns if st else None,
            ]
        normalised: dict[str, Any] = json.loads(json.dumps(d))
        return normalised

    def result_sha256(self) -> str:
        """Hash of the options that determine the maps (for checkpoint matching)."""
        blob = json.dumps(self.result_fields(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    @classmethod
    def from_mapping(
        cls, data: dict[str, Any], *, source: str = "config"
    ) -> MatchConfig:
        """Build a config from a mapping using field or flag names.

        Raises
        ------
        ConfigError
            If a key is unknown or a value invalid.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            k = key.replace("-", "_").lstrip("_")
            k = _ALIASES.get(k, k)
            if k not in names:
                raise ConfigError(f"{source}: unknown option {key!r}")
            if k in kwargs:
                raise ConfigError(
                    f"{source}: option {key!r} sets {k}, which another key already "
                    "sets; keep one of them"
                )
            kwargs[k] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @staticmethod
    def _toml_table(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The options of a TOML config: its ``[match]`` table, or its top level."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise FormatError(f"{p}: config file not found") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise FormatError(f"{p}: not a readable TOML file ({exc})") from None
        if isinstance(data.get("match"), dict):
            data = data["match"]
        return dict(data)

    @classmethod
    def run_options_from_toml(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The run options (:data:`RUN_OPTION_KEYS`) a config file sets: booleans
        ``overwrite``, ``quiet``, ``verbose`` and the text ``log``.

        Raises
        ------
        FormatError
            If the file is missing or not TOML.
        ConfigError
            If one of them has the wrong type.
        """
        out: dict[str, Any] = {}
        for key, value in cls._toml_table(path).items():
            k = key.replace("-", "_")
            if k not in RUN_OPTION_KEYS:
                continue
            want = str if k == "log" else bool
            if not isinstance(value, want):
                kind = "'info' or 'debug'" if want is str else "true or false"
                raise ConfigError(f"{path}: option {key!r} = {value!r}: give {kind}")
            out[k] = value
        return out

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> MatchConfig:
        """Load a TOML file (a ``[match]`` table or top-level keys); apply overrides.
        The run options (:data:`RUN_OPTION_KEYS`) are left to the caller.

        Raises
        ------
        FormatError
            If the file is missing or not TOML.
        ConfigError
            If an option is unknown or invalid.
        """
        p = Path(path)
        data = {
            k: v
            for k, v in cls._toml_table(p).items()
            if k.replace("-", "_") not in RUN_OPTION_KEYS
        }
        merged = dict(data)
        for key, value in overrides.items():
            # an override replaces whatever spelling the file used
            k = _ALIASES.get(key, key)
            for fk in list(merged):
                if _ALIASES.get(fk.replace("-", "_"), fk.replace("-", "_")) == k:
                    del merged[fk]
            merged[k] = value
        return cls.from_mapping(merged, source=str(p))
