"""`tmfast merge-stars`, `tmfast to-imod`, `tmfast roc`: particle-file utilities."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from tmfast.cli._flags import cli_flags

_IO = "Input / Output"

#: Library wording -> merge-stars wording (see tmfast.cli._flags.cli_terms).
_MERGE_FLAGS = {
    "pass the particle STAR files as files": "give -i A.star B.star ...",
    "merge the files with strip_prefix (merge_particle_stars) and import the "
    "merged file instead": "run merge-stars --strip-prefix without --import-index "
    "and import the merged file instead",
}
#: Library parameter names -> to-imod flags.
_TO_IMOD_FLAGS = {
    "pass the particle STAR files as files": "give -i A.star B.star ...",
    "dims_xyz=(X, Y, Z)": "--dims X Y Z",
    "dims_xyz": "--dims",
    "tomograms_star": "--tomograms-star",
    "radius_px": "--radius-px",
    "particle_diameter_a": "--particle-diameter",
    "binning": "--binning",
}
#: Library parameter names -> roc flags.
_ROC_FLAGS = {
    "pass an existing file as tomogram_mask or set ignore_tomogram_mask=True": (
        "restore the job's mask file or use --ignore-tomogram-mask"
    ),
    "n_particles": "-n/--number-of-particles",
    "particle_diameter_a": "--particle-diameter",
    "n_bins": "--bins",
    "gaussian_peak": "--gaussian-peak",
    "n_false_positives": "--number-of-false-positives",
}

#: The particle STAR files of merge-stars and to-imod: ``-i A.star B.star ...``
#: (Click takes ``-i A`` plus the positional ``B ...``; :func:`_inputs` joins them).
_InputStarFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "-i",
        "--input-star-files",
        help="Particle STAR files, RELION5 or pytom (-i A.star B.star ...).",
        rich_help_panel=_IO,
    ),
]
_MoreStarFiles = Annotated[
    list[Path] | None,
    typer.Argument(help="More STAR files.", show_default=False),
]


def _inputs(option: list[Path] | None, extra: list[Path] | None) -> list[Path]:
    """``-i A B C`` parses as ``-i A`` plus positional ``B C``: join both."""
    files = [*(option or []), *(extra or [])]
    seen: dict[Path, None] = {}
    for f in files:
        seen.setdefault(f.resolve(), None)
    return list(seen)


def merge_stars(
    input_star_files: _InputStarFiles = None,
    more: _MoreStarFiles = None,
    output_file: Path = typer.Option(
        Path("particles.star"),
        "-o",
        "--output-file",
        help="Output STAR.",
        rich_help_panel=_IO,
    ),
    import_index: bool = typer.Option(
        False,
        "--relion5-compat",
        "--import-index",
        help="Write RELION5's import index (rlnTomoName, rlnTomoImportParticleFile) "
        "instead of concatenating.",
    ),
    strip_prefix: str = typer.Option(
        "",
        "--strip-prefix",
        help="Remove this prefix from tomogram names (e.g. rec_) "
        "so they match RELION5's rlnTomoName.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output."),
) -> None:
    """Concatenate particle STAR files, or write a RELION5 import index."""
    from tmfast._fileio import check_output_folder
    from tmfast.errors import ConfigError
    from tmfast.extraction.merge import merge_particle_stars, relion5_import_index
    from tmfast.io.star import write_star

    if output_file.is_dir():
        raise ConfigError(
            f"{output_file}: -o/--output-file is a folder; give a STAR file name"
        )
    check_output_folder(output_file.parent, "-o/--output-file", output_file)

    files = _inputs(input_star_files, more)
    with cli_flags(_MERGE_FLAGS):
        if import_index:
            blocks = relion5_import_index(files, strip_prefix=strip_prefix)
        else:
            blocks = merge_particle_stars(files, strip_prefix=strip_prefix)
    write_star(output_file, blocks, overwrite=overwrite)
    n = len(next(iter(blocks["particles"].values()), []))
    typer.echo(f"{len(files)} files -> {output_file} ({n} rows)")


def to_imod(
    input_star_files: _InputStarFiles = None,
    more: _MoreStarFiles = None,
    output_dir: Path = typer.Option(
        Path("."),
        "-o",
        "--output-dir",
        help="Folder for {tomo}.mod.",
        rich_help_panel=_IO,
    ),
    dims: tuple[int, int, int] | None = typer.Option(
        None, "--dims", help="Tomogram size X Y Z in voxels (binned tomogram)."
    ),
    tomograms_star: Path | None = typer.Option(
        None,
        "--tomograms-star",
        "--relion5-tomograms-star",
        help="RELION5 tomograms.star: sizes, tilt-series pixel size and binning.",
    ),
    binning: float = typer.Option(
        1.0,
        "--binning",
        help="Tomogram binning relative to the tilt series (with "
        "--dims, for centred Å coordinates).",
    ),
    radius_px: float | None = typer.Option(
        None, "--radius-px", help="Sphere radius in tomogram voxels."
    ),
    particle_diameter: float | None = typer.Option(
        None,
        "--particle-diameter",
        help="Particle diameter in Å (sphere radius = "
        "diameter/2/voxel); default radius 5 voxels.",
    ),
    strip_prefix: str = typer.Option(
        "rec_", "--strip-prefix", help="Prefix removed from tomogram names."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs."),
) -> None:
    """Write one IMOD .mod per tomogram from particle STAR files (no IMOD needed)."""
    from tmfast._fileio import check_output_folder
    from tmfast.extraction.merge import star_to_imod

    check_output_folder(output_dir, "-o/--output-dir")
    files = _inputs(input_star_files, more)
    with cli_flags(_TO_IMOD_FLAGS):
        written = star_to_imod(
            files,
            output_dir,
            dims_xyz=dims,
            tomograms_star=tomograms_star,
            binning=binning,
            radius_px=radius_px,
            particle_diameter_a=particle_diameter,
            strip_prefix=strip_prefix,
            overwrite=overwrite,
        )
    for name, (path, n) in written.items():
        typer.echo(f"{name}: {n} points -> {path}")


def roc(
    job_file: Path = typer.Option(
        ..., "-j", "--job-file", help="{tomo}_job.json.", rich_help_panel=_IO
    ),
    n_particles: int = typer.Option(
        ...,
        "-n",
        "--number-of-particles",
        help="Picks to collect (about 3x the expected number).",
    ),
    particle_diameter: float | None = typer.Option(
        None, "--particle-diameter", help="Diameter in Å."
    ),
    bins: int = typer.Option(20, "--bins", help="Histogram bins."),
    gaussian_peak: int | None = typer.Option(
        None, "--gaussian-peak", help="Expected bin index of the particle peak."
    ),
    force_peak: bool = typer.Option(
        False, "--force-peak", help="Pin the particle peak to --gaussian-peak."
    ),
    crop_plot: bool = typer.Option(
        False, "--crop-plot", help="Crop the y-axis to the particle population."
    ),
    ignore_tomogram_mask: bool = typer.Option(
        False,
        "--ignore-tomogram-mask",
        "--ignore_tomogram_mask",
        help="Ignore the job's tomogram mask.",
    ),
    output_dir: Path | None = typer.Option(
        None,
        "-o",
        "--output-dir",
        help="Output folder; default the job's.",
        rich_help_panel=_IO,
    ),
    show_plot: bool = typer.Option(
        False,
        "--show-plot",
        help="Also open the plot in a window when a display is available.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs."),
) -> None:
    """Estimate the number of true particles and the best threshold (bimodal fit)."""
    from tmfast._fileio import check_output_folder, check_writable
    from tmfast.errors import ConfigError
    from tmfast.extraction.pytom_job import load_job
    from tmfast.extraction.roc import estimate_roc, plot_roc, score_map_background

    if gaussian_peak is None and force_peak:
        raise ConfigError("--force-peak needs --gaussian-peak")
    if n_particles < 20:
        raise ConfigError(
            f"-n/--number-of-particles {n_particles}: the ROC fit needs at least 20 "
            "picks (about 3x the expected number of particles)"
        )
    if bins < 6:
        raise ConfigError(f"--bins {bins} must be at least 6")
    if gaussian_peak is not None and not 0 <= gaussian_peak < bins:
        raise ConfigError(f"--gaussian-peak {gaussian_peak} must be in [0, {bins})")
    if particle_diameter is not None and not (
        math.isfinite(particle_diameter) and particle_diameter > 0
    ):
        raise ConfigError(
            f"--particle-diameter {particle_diameter:g} must be a positive "
            "diameter in Å"
        )
    # the job names the outputs: refuse existing ones before any work
    mjob, jpath = load_job(job_file)
    out_dir = output_dir if output_dir is not None else jpath.resolve().parent
    check_output_folder(out_dir, "-o/--output-dir")
    paths = [out_dir / f"{mjob.tomo_id}_roc.svg", out_dir / f"{mjob.tomo_id}_roc.png"]
    for p in paths:
        check_writable(p, overwrite=overwrite)

    with cli_flags(_ROC_FLAGS):
        bg, table = score_map_background(
            job_file,
            n_particles=n_particles,
            particle_diameter_a=particle_diameter,
            ignore_tomogram_mask=ignore_tomogram_mask,
        )
        res = estimate_roc(
            table.scores,
            n_background=bg[0],
            background_mean=bg[1],
            background_std=bg[2],
            n_bins=bins,
            gaussian_peak=gaussian_peak,
            force_peak=force_peak,
        )
    plot_roc(
        res,
        paths,
        title=f"{table.tomo_id}: ROC estimate",
        crop_plot=crop_plot,
        overwrite=overwrite,
    )
    i = int(res.quality.argmax())
    typer.echo(
        f"{table.tomo_id}: estimated true particles {res.n_true_estimate:.0f} "
        f"(of {len(table)} picks); best threshold {res.best_threshold:.4g} "
        f"(recall {res.recall[i]:.2f}, FDR {res.fdr[i]:.2f}) -> {paths[0]}"
    )
    if show_plot:
        from tmfast.extraction.plots import show_image

        if not show_image(paths[1]):
            typer.echo(
                f"--show-plot: cannot open a window (no display or no interactive "
                f"matplotlib backend); the plot is in {paths[1]}"
            )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("merge-stars", no_args_is_help=True)(merge_stars)
    app.command("to-imod", no_args_is_help=True)(to_imod)
    app.command("roc", no_args_is_help=True)(roc)
