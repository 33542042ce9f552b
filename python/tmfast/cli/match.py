"""`tmfast match`: template matching (flags follow pytom_match_template.py)."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from tmfast.errors import ConfigError, TmfastError

logger = logging.getLogger(__name__)

_IO = "Input / Output"
_ANG = "Angular sampling"
_REG = "Search region"
_FIL = "Filters and microscope"
_PERF = "Performance"

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _PytomArgs(TyperCommand):
    """Accept pytom's multi-value forms ``-a MIN MAX`` and ``-g 0 1 2``.

    They are rewritten to ``-a MIN,MAX`` and ``-g 0,1,2`` before click parses them.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            tok = args[i]
            out.append(tok)
            i += 1
            if tok in ("-a", "--tilt-angles") and i < len(args):
                value = args[i]
                i += 1
                if i < len(args) and _NUMBER.match(args[i]) and _NUMBER.match(value):
                    value = f"{value},{args[i]}"
                    i += 1
                out.append(value)
            elif tok in ("-g", "--gpu-ids") and i < len(args):
                ids = [args[i]]
                i += 1
                while i < len(args) and args[i].isdigit():
                    ids.append(args[i])
                    i += 1
                out.append(",".join(ids))
        return super().parse_args(ctx, out)


def _tilts(value: str | None) -> tuple[float, float] | str | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) == 2 and all(_NUMBER.match(p.strip()) for p in parts):
        return float(parts[0]), float(parts[1])
    if _NUMBER.match(value.strip()):
        raise ConfigError(
            f"--tilt-angles {value}: give MIN MAX in degrees or a .tlt/.rawtlt file"
        )
    return value


def _toml_sets(path: Path, field: str) -> bool:
    """Whether the config file sets ``field`` (by its field or flag name)."""
    from tmfast.matching.config import MatchConfig

    return any(key.replace("-", "_") == field for key in MatchConfig._toml_table(path))


def _gpu_ids(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.replace(" ", ",").split(",") if v)
    except ValueError:
        raise ConfigError(
            f"--gpu-ids {value!r}: give device indices, e.g. -g 0 1"
        ) from None


#: Seconds between progress log lines when stderr is not a terminal.
LOG_INTERVAL_S = 30.0


def _log_progress(
    interval_s: float = LOG_INTERVAL_S,
    *,
    clock: Callable[[], float] = time.monotonic,
    unit: str = "rotations",
) -> Callable[[int, int], None]:
    """Progress as log lines, at most one per ``interval_s`` (plus the first and last).

    Each line gives rotations done over total, the percentage, the rotation rate of
    this run (resumed rotations excluded) and the time left at that rate.
    """
    state: dict[str, float | None] = {"start": None, "first": 0.0, "last": None}

    def report(done: int, total: int) -> None:
        now = clock()
        if state["start"] is None:
            state["start"], state["first"] = now, float(done)
        last = state["last"]
        if done < total and last is not None and now - last < interval_s:
            return
        state["last"] = now
        start = state["start"]
        first = state["first"]
        assert start is not None and first is not None
        elapsed = now - start
        rate = (done - first) / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else float("nan")
        logger.info(
            "matching: %d/%d %s (%.1f%%), %.1f rot/s, %s left",
            done,
            total,
            unit,
            100.0 * done / total if total else 100.0,
            rate,
            "?" if left != left else f"{left:.0f} s",
        )

    return report


def _progress(
    unit: str = "rotations",
) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """Return (callback, closer): a rich bar on a terminal, throttled logs otherwise.

    ``unit`` names what is counted: rotations, or rotation-tiles (rotations times
    sub-volumes) with ``-s``, whose total is then a multiple of the rotations.
    """
    import os

    if sys.stderr.isatty() and "SLURM_JOB_ID" not in os.environ:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("matching"),
            BarColumn(),
            MofNCompleteColumn(),
            # the count's unit when it is not plain rotations
            *([] if unit == "rotations" else [TextColumn(unit)]),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("elapsed"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=Console(file=sys.stderr),
            transient=False,
        )
        task = bar.add_task("match", total=None, rate="")
        state: dict[str, float | None] = {"start": None, "first": 0.0}

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if state["start"] is None:
                # started by the first report, i.e. once the inputs are checked and
                # the search begins: not as a '0/?' bar above an input error
                bar.start()
                state["start"], state["first"] = now, float(done)
            start, first = state["start"], state["first"]
            assert start is not None and first is not None
            elapsed = now - start
            rate = (done - first) / elapsed if elapsed > 0 else 0.0
            bar.update(task, completed=done, total=total, rate=f"{rate:.1f} rot/s")

        def stop() -> None:
            if state["start"] is not None:
                bar.stop()

        return report, stop
    return _log_progress(unit=unit), lambda: None


class MatchAborted(TmfastError):
    """Ctrl-C stopped matching at once (a second one while stopping; exit 130)."""

    exit_code = 130


_LOG_LEVELS = {"info": logging.INFO, "debug": logging.DEBUG}

#: CLI spelling of the files the command needs.
_REQUIRED = {
    "template": "-t/--template",
    "tomogram": "-v/--tomogram",
    "mask": "-m/--mask",
}


def _refuse_other_search(cfg: Any, job_path: Path) -> None:
    """Name the search whose outputs are in the way when it is another one.

    Outputs are named after the tomogram only, so a second template matched
    against the same tomogram into the same folder met 'output exists; pass
    --overwrite', which would replace the first template's results.

    Raises
    ------
    ConfigError
        If ``job_path`` records another template or tomogram file.
    """
    import json

    try:
        old = json.loads(job_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no job file (or not one of ours): the usual check speaks
    if not isinstance(old, dict):
        return
    differs = [
        name
        for name in ("template", "tomogram")
        if isinstance(old.get(name), str)
        and getattr(cfg, name) is not None
        and old[name] != str(Path(getattr(cfg, name)).resolve())
    ]
    if differs:
        raise ConfigError(
            f"{job_path}: this folder holds the results of matching "
            f"{old.get('template')} against {old.get('tomogram')} (outputs are "
            "named after the tomogram only); give this run another "
            "-d/--destination, or pass --overwrite to replace those results"
        )


def _check_gpu_request(gpu_ids: tuple[int, ...] | None, backend: str) -> None:
    """Refuse ``-g`` when no GPU backend can run; warn when ``--backend cpu``.

    Raises
    ------
    ConfigError
        If device indices are given, the backend is ``auto`` and neither cuda nor
        OpenCL on a GPU device is available (the reasons are in the message).
    """
    if gpu_ids is None:
        return
    ids = " ".join(str(i) for i in gpu_ids)
    if backend == "cpu":
        logger.warning("-g/--gpu-ids %s ignored: --backend cpu uses the CPU cores", ids)
        return
    if backend != "auto":
        return  # cuda/opencl: the registry refuses with its reason if unavailable
    from tmfast.backends import registry

    reasons = registry.available_backends()
    if reasons["cuda"] is None:
        return
    opencl_reason = reasons["opencl"]
    if opencl_reason is None:
        module, _ = registry._probe("opencl")
        if module is not None and registry._opencl_has_gpu(module):
            return
        opencl_reason = "no GPU device (CPU OpenCL only)"
    cuda_reason = str(reasons["cuda"])
    install = "" if "tmfast[cuda]" in cuda_reason else "install tmfast[cuda], or "
    raise ConfigError(
        f"-g/--gpu-ids {ids}: no GPU backend is available here (cuda: {cuda_reason}; "
        f"opencl: {opencl_reason}); {install}drop -g / use --backend cpu to run on "
        "the CPU"
    )


def match(
    template: Path | None = typer.Option(
        None,
        "-t",
        "--template",
        help="Template MRC (cubic box, same contrast as the tomogram).",
        rich_help_panel=_IO,
    ),
    tomogram: Path | None = typer.Option(
        None,
        "-v",
        "--tomogram",
        help="Tomogram MRC; its file stem names the outputs.",
        rich_help_panel=_IO,
    ),
    destination: Path | None = typer.Option(
        None,
        "-d",
        "--destination",
        help="Output folder (default: current).",
        rich_help_panel=_IO,
    ),
    mask: Path | None = typer.Option(
        None,
        "-m",
        "--mask",
        help="Mask MRC, same box as the template.",
        rich_help_panel=_IO,
    ),
    non_spherical_mask: bool | None = typer.Option(
        None,
        "--non-spherical-mask/--no-non-spherical-mask",
        help="Rotate the mask with the template and "
        "recompute the local sigma per rotation (slower).",
        rich_help_panel=_IO,
    ),
    tomogram_mask: Path | None = typer.Option(
        None,
        "--tomogram-mask",
        help="MRC the size of the tomogram; voxels <= 0 are excluded from the "
        "statistics (and from extraction); -s sub-volumes with none > 0 are skipped "
        "(-inf), other voxels keep their scores, as in pytom.",
        rich_help_panel=_REG,
    ),
    particle_diameter: float | None = typer.Option(
        None,
        "--particle-diameter",
        help="Particle diameter in Å: angular step by the "
        "Crowther criterion when --angular-search is not given.",
        rich_help_panel=_ANG,
    ),
    angular_search: str | None = typer.Option(
        None,
        "--angular-search",
        help="Angular step in degrees, or a file of ZXZ "
        "Euler angles in radians (3 per line).",
        rich_help_panel=_ANG,
    ),
    z_axis_rotational_symmetry: int | None = typer.Option(
        None,
        "--z-axis-rotational-symmetry",
        help="n-fold symmetry about z (default 1).",
        rich_help_panel=_ANG,
    ),
    volume_split: tuple[int, int, int] | None = typer.Option(
        None,
        "-s",
        "--volume-split",
        help="Sub-volumes along X Y Z (default 1 1 1).",
        rich_help_panel=_REG,
    ),
    search_x: tuple[int, int] | None = typer.Option(
        None,
        "--search-x",
        help="START END voxel range along x (END exclusive).",
        rich_help_panel=_REG,
    ),
    search_y: tuple[int, int] | None = typer.Option(
        None, "--search-y", help="START END voxel range along y.", rich_help_panel=_REG
    ),
    search_z: tuple[int, int] | None = typer.Option(
        None, "--search-z", help="START END voxel range along z.", rich_help_panel=_REG
    ),
    tilt_angles: str | None = typer.Option(
        None,
        "-a",
        "--tilt-angles",
        help="MIN MAX tilt in degrees, or a .tlt/.rawtlt file.",
        rich_help_panel=_FIL,
    ),
    tilt_angles_first_column: Path | None = typer.Option(
        None,
        "--tilt-angles-first-column",
        help="Text file whose first column holds the tilt angles in degrees "
        "(instead of -a).",
        rich_help_panel=_FIL,
    ),
    defocus_handedness: int | None = typer.Option(
        None,
        "--defocus-handedness",
        help="Defocus gradient across the tilted specimen: each sub-volume's "
        "template CTF at its own position (1: Pyle & Zianetti, -1: inverted, 0: "
        "off; default: the RELION5/AreTomo3 metadata's, else off); needs "
        "--per-tilt-weighting and per-tilt defocus (--defocus or a RELION5/AreTomo3 "
        "file), and -s splits for more than one position.",
        rich_help_panel=_FIL,
    ),
    warp_xml_file: Path | None = typer.Option(
        None,
        "--warp-xml-file",
        help="Not supported yet: use --relion5-tomograms-star or explicit files.",
        rich_help_panel=_FIL,
    ),
    per_tilt_weighting: bool | None = typer.Option(
        None,
        "--per-tilt-weighting/--no-per-tilt-weighting",
        help="Tilt-weighted wedge with per-tilt CTF and dose (needs a tilt file; "
        "on by default with --relion5-tomograms-star, as in pytom).",
        rich_help_panel=_FIL,
    ),
    voxel_size_angstrom: float | None = typer.Option(
        None,
        "--voxel-size-angstrom",
        help="Voxel size in Å (overrides the headers).",
        rich_help_panel=_FIL,
    ),
    low_pass: float | None = typer.Option(
        None,
        "--low-pass",
        help="Gaussian low-pass resolution in Å.",
        rich_help_panel=_FIL,
    ),
    high_pass: float | None = typer.Option(
        None,
        "--high-pass",
        help="Gaussian high-pass resolution in Å.",
        rich_help_panel=_FIL,
    ),
    dose_accumulation: Path | None = typer.Option(
        None,
        "--dose-accumulation",
        help="Text file: accumulated dose (e-/Å²) per tilt.",
        rich_help_panel=_FIL,
    ),
    defocus: str | None = typer.Option(
        None,
        "--defocus",
        help="Defocus in µm, a .txt file (µm per tilt) or an IMOD .defocus file.",
        rich_help_panel=_FIL,
    ),
    amplitude_contrast: float | None = typer.Option(
        None,
        "--amplitude-contrast",
        help="Amplitude contrast fraction (0-1).",
        rich_help_panel=_FIL,
    ),
    spherical_aberration: float | None = typer.Option(
        None,
        "--spherical-aberration",
        help="Spherical aberration in mm.",
        rich_help_panel=_FIL,
    ),
    voltage: float | None = typer.Option(
        None, "--voltage", help="Voltage in kV.", rich_help_panel=_FIL
    ),
    phase_shift: float | None = typer.Option(
        None,
        "--phase-shift",
        help="Phase shift in degrees (phase plate).",
        rich_help_panel=_FIL,
    ),
    tomogram_ctf_model: str | None = typer.Option(
        None,
        "--tomogram-ctf-model",
        help="'phase-flip' if the tomogram was "
        "phase-flipped (template weighted with |CTF|).",
        rich_help_panel=_FIL,
    ),
    spectral_whitening: bool | None = typer.Option(
        None,
        "--spectral-whitening/--no-spectral-whitening",
        help="Whitening filter estimated from the tomogram.",
        rich_help_panel=_FIL,
    ),
    random_phase_correction: bool | None = typer.Option(
        None,
        "-r",
        "--random-phase-correction/--no-random-phase-correction",
        help="Subtract the scores of a phase-randomised template.",
        rich_help_panel=_FIL,
    ),
    rng_seed: int | None = typer.Option(
        None,
        "--rng-seed",
        help="Seed of the phase randomisation (default random, stored in the job).",
        rich_help_panel=_FIL,
    ),
    relion5_tomograms_star: Path | None = typer.Option(
        None,
        "--relion5-tomograms-star",
        help="RELION5 tomograms.star: tilts, CTF, dose and voxel size; turns on "
        "--per-tilt-weighting (as pytom) unless --no-per-tilt-weighting.",
        rich_help_panel=_FIL,
    ),
    half_precision: bool | None = typer.Option(
        None,
        "--half-precision/--no-half-precision",
        help="Write the score map as float16.",
        rich_help_panel=_IO,
    ),
    gpu_ids: str | None = typer.Option(
        None,
        "-g",
        "--gpu-ids",
        help="Device indices, e.g. -g 0 1 (rotations shared).",
        rich_help_panel=_PERF,
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="auto, cpu, cuda or opencl (default auto).",
        rich_help_panel=_PERF,
    ),
    checkpoint_every: int | None = typer.Option(
        None,
        "--checkpoint-every",
        help="Checkpoint every N rotations (default 2000, "
        "and at least every 5 min; 0 disables).",
        rich_help_panel=_PERF,
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="TOML file setting any option (flags override it).",
        rich_help_panel=_IO,
    ),
    overwrite: bool | None = typer.Option(
        None,
        "--overwrite/--no-overwrite",
        help="Replace existing outputs.",
        rich_help_panel=_IO,
    ),
    log: str | None = typer.Option(
        None,
        "--log",
        help="Log level: info or debug (as pytom; same as tmfast -v).",
        rich_help_panel=_IO,
    ),
    quiet: bool | None = typer.Option(
        None, "-q", "--quiet", help="Warnings and errors only.", rich_help_panel=_IO
    ),
    verbose: bool | None = typer.Option(
        None,
        "--verbose",
        help="Debug log output (-v after match is --tomogram, as in pytom).",
        rich_help_panel=_IO,
    ),
) -> None:
    """Match a template over a tomogram: {tomo}_scores.mrc, _angles.mrc, _job.json."""
    from tmfast.cli import configure_logging
    from tmfast.matching.config import MatchConfig
    from tmfast.matching.engine import run_match

    try:
        if config is not None:  # run options the file sets; flags given win
            run = MatchConfig.run_options_from_toml(config)
            overwrite = run.get("overwrite") if overwrite is None else overwrite
            quiet = run.get("quiet") if quiet is None else quiet
            verbose = run.get("verbose") if verbose is None else verbose
            log = run.get("log") if log is None else log
        overwrite = bool(overwrite)
        if log is not None:
            level = _LOG_LEVELS.get(log.strip().lower())
            if level is None:
                raise ConfigError(f"--log {log!r}: choose info or debug")
            configure_logging(level)
        if verbose:
            configure_logging(logging.DEBUG)
        if quiet:
            configure_logging(logging.WARNING)
        if warp_xml_file is not None:
            raise ConfigError(
                f"--warp-xml-file {warp_xml_file}: Warp XML import is not supported "
                "yet; use --relion5-tomograms-star or explicit "
                "-a/--defocus/--dose-accumulation files"
            )
        if tilt_angles_first_column is not None:
            if tilt_angles is not None:
                raise ConfigError(
                    "give -a/--tilt-angles or --tilt-angles-first-column, not both"
                )
            if not tilt_angles_first_column.is_file():
                raise ConfigError(
                    f"--tilt-angles-first-column {tilt_angles_first_column}: no such "
                    "file; give a text file with the tilt angles in its first column"
                )
            tilt_angles = str(tilt_angles_first_column)

        values: dict[str, Any] = {
            "template": template,
            "tomogram": tomogram,
            "destination": destination,
            "mask": mask,
            "non_spherical_mask": non_spherical_mask,
            "tomogram_mask": tomogram_mask,
            "particle_diameter_a": particle_diameter,
            "angular_search": angular_search,
            "z_axis_rotational_symmetry": z_axis_rotational_symmetry,
            "volume_split_xyz": volume_split,
            "search_x": search_x,
            "search_y": search_y,
            "search_z": search_z,
            "tilt_angles": _tilts(tilt_angles),
            "per_tilt_weighting": per_tilt_weighting,
            "voxel_size_a": voxel_size_angstrom,
            "low_pass_a": low_pass,
            "high_pass_a": high_pass,
            "dose_accumulation": dose_accumulation,
            "defocus": defocus,
            "amplitude_contrast": amplitude_contrast,
            "spherical_aberration_mm": spherical_aberration,
            "voltage_kv": voltage,
            "phase_shift_deg": phase_shift,
            "tomogram_ctf_model": tomogram_ctf_model,
            "spectral_whitening": spectral_whitening,
            "random_phase_correction": random_phase_correction,
            "rng_seed": rng_seed,
            "relion5_tomograms_star": relion5_tomograms_star,
            "half_precision": half_precision,
            "gpu_ids": _gpu_ids(gpu_ids),
            "backend": backend,
            "checkpoint_every": checkpoint_every,
            "defocus_handedness": defocus_handedness,
        }
        given = {k: v for k, v in values.items() if v is not None}
        if config is not None:
            cfg = MatchConfig.from_toml(config, **given)
        else:
            cfg = MatchConfig.from_mapping(given, source="tmfast match")
        for name, flags in _REQUIRED.items():
            if getattr(cfg, name) is None:
                raise ConfigError(f"{flags} is required")
        if (
            per_tilt_weighting is None
            and cfg.relion5_tomograms_star is not None
            and not cfg.per_tilt_weighting
            and not (config is not None and _toml_sets(config, "per_tilt_weighting"))
        ):
            # pytom_match_template.py always weights per tilt with RELION5 metadata:
            # without it the star's per-tilt defocus and dose would go unused
            cfg = cfg.with_updates(per_tilt_weighting=True)
        if not overwrite:  # refuse existing outputs before any warning or compute
            from tmfast._fileio import check_writable
            from tmfast.matching.engine import output_paths

            paths = output_paths(cfg.destination, cfg.tomo_id)
            _refuse_other_search(cfg, paths["job"])
            for name in ("scores", "angles", "job"):
                check_writable(paths[name], overwrite=False)
        _check_gpu_request(cfg.gpu_ids, cfg.backend)
    except KeyboardInterrupt:
        raise MatchAborted(
            "interrupted (Ctrl-C) before matching started; nothing written"
        ) from None
    split = cfg.volume_split_xyz
    report, stop = _progress(
        "rotation-tiles" if split[0] * split[1] * split[2] > 1 else "rotations"
    )
    try:
        # a stopped run's checkpoint with other options is kept unless --overwrite
        run_match(
            cfg, progress=report, overwrite=overwrite, protect_other_checkpoints=True
        )
    except KeyboardInterrupt:
        raise MatchAborted(
            "aborted by Ctrl-C: the current batch is lost; rerunning the same "
            "command resumes from the last checkpoint, if one was written"
        ) from None
    finally:
        stop()
    # the engine has logged the rotations, backend, sigma and files written


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command(name="match", cls=_PytomArgs)(match)
