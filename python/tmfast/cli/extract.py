"""`tmfast extract`: particles from a match job's score maps.

Flags follow ``pytom_extract_candidates.py``; RELION5 columns are the default.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import typer

from tmfast.errors import ConfigError, FormatError

logger = logging.getLogger(__name__)

_IO = "Input / Output"
_PICK = "Picking"
_OUT = "Output format"


def extract(
    job_file: Path = typer.Option(
        ...,
        "-j",
        "--job-file",
        help="{tomo}_job.json of tmfast or pytom-match-pick.",
        rich_help_panel=_IO,
    ),
    n_particles: int = typer.Option(
        ...,
        "-n",
        "--number-of-particles",
        help="Maximum number of picks.",
        rich_help_panel=_PICK,
    ),
    particle_diameter: float | None = typer.Option(
        None,
        "--particle-diameter",
        help="Particle diameter in Å (exclusion sphere of "
        "radius diameter/2 and border); default: the job's.",
        rich_help_panel=_PICK,
    ),
    cut_off: float | None = typer.Option(
        None,
        "-c",
        "--cut-off",
        help="Manual LCCmax cutoff; default automatic from the "
        "false-alarm rate; a negative value (-c -1) forces n picks.",
        rich_help_panel=_PICK,
    ),
    n_false_positives: float = typer.Option(
        1.0,
        "--number-of-false-positives",
        help="Expected background picks above the automatic cutoff (<1 is stricter).",
        rich_help_panel=_PICK,
    ),
    tomogram_mask: Path | None = typer.Option(
        None,
        "--tomogram-mask",
        help="Mask MRC of the tomogram (<=0 excluded); default: the job's.",
        rich_help_panel=_PICK,
    ),
    ignore_tomogram_mask: bool = typer.Option(
        False,
        "--ignore-tomogram-mask",
        "--ignore_tomogram_mask",
        help="Ignore the given and the job's tomogram masks.",
        rich_help_panel=_PICK,
    ),
    tophat_filter: bool = typer.Option(
        False,
        "--tophat-filter",
        help="Keep only sharp score peaks.",
        rich_help_panel=_PICK,
    ),
    tophat_connectivity: int = typer.Option(
        1,
        "--tophat-connectivity",
        help="Top-hat structuring element connectivity (1-3).",
        rich_help_panel=_PICK,
    ),
    tophat_bins: int = typer.Option(
        50,
        "--tophat-bins",
        help="Histogram bins of the top-hat fit.",
        rich_help_panel=_PICK,
    ),
    relion5_compat: bool = typer.Option(
        True,
        "--relion5-compat/--pytom-columns",
        help="RELION5 columns (centred Å, rlnTomoName; the default) or "
        "pytom-match-pick's default columns (voxel coordinates).",
        rich_help_panel=_OUT,
    ),
    relion5_tomograms_star: Path | None = typer.Option(
        None,
        "--relion5-tomograms-star",
        help="RELION5 tomograms.star: exact "
        "rlnTomoSize for centring, and the tilt-series pixel size and binning when "
        "the job has no RELION5 metadata.",
        rich_help_panel=_OUT,
    ),
    imod: bool = typer.Option(
        False, "--imod", help="Also write {tomo}_particles.mod.", rich_help_panel=_OUT
    ),
    plot_bins: int = typer.Option(
        20, "--plot-bins", help="Bins of the score histogram.", rich_help_panel=_OUT
    ),
    no_plots: bool = typer.Option(
        False,
        "--no-plots",
        help="Skip the histogram and QC picture.",
        rich_help_panel=_OUT,
    ),
    output_dir: Path | None = typer.Option(
        None,
        "-o",
        "--output-dir",
        help="Output folder; default: the job file's.",
        rich_help_panel=_IO,
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing outputs.", rich_help_panel=_IO
    ),
) -> None:
    """Extract particles from score maps: STAR (RELION5), plots, QC picture, IMOD."""
    from tmfast._fileio import check_writable
    from tmfast.extraction import extract_candidates
    from tmfast.extraction.star_columns import relion5_tomogram_geometry

    out_dir = output_dir if output_dir is not None else job_file.resolve().parent
    table = extract_candidates(
        job_file,
        n_particles=n_particles,
        particle_diameter_a=particle_diameter,
        cutoff=cut_off,
        n_false_positives=n_false_positives,
        tomogram_mask=tomogram_mask,
        ignore_tomogram_mask=ignore_tomogram_mask,
        tophat_filter=tophat_filter,
        tophat_connectivity=tophat_connectivity,
        tophat_bins=tophat_bins,
    )
    size_unbinned = None
    if relion5_tomograms_star is not None:
        geo = relion5_tomogram_geometry(relion5_tomograms_star, table.tomo_id)
        size_unbinned = geo.size_xyz_unbinned
        if table.tilt_series_pixel_size_a is None:
            table = dataclasses.replace(
                table,
                tilt_series_pixel_size_a=geo.tilt_series_pixel_size_a,
                binning=geo.binning,
            )
    stem = out_dir / table.tomo_id
    star = Path(f"{stem}_particles.star")
    mod = Path(f"{stem}_particles.mod")
    plots = [Path(f"{stem}_extraction.svg"), Path(f"{stem}_extraction.png")]
    qc = Path(f"{stem}_qc.png")
    tophat_plots = [Path(f"{stem}_tophat.svg"), Path(f"{stem}_tophat.png")]
    outputs = [star] + ([mod] if imod else [])
    if not no_plots:
        outputs += [*plots, qc] + (tophat_plots if tophat_filter else [])
    for p in outputs:  # refuse before writing anything
        check_writable(p, overwrite=overwrite)

    from tmfast.io.star import write_star

    write_star(
        star,
        table.to_star_blocks(
            relion5=relion5_compat, tomo_size_xyz_unbinned=size_unbinned
        ),
        overwrite=overwrite,
    )
    if len(table) == 0 and not math.isfinite(table.cutoff):
        raise ConfigError(
            f"{table.tomo_id}: no voxel left to pick (tomogram mask, border of "
            f"{table.particle_radius_vox:.0f} voxels, unsearched region); wrote an "
            f"empty {star.name}. Check the mask and --particle-diameter"
        )
    if len(table) == 0:
        raise ConfigError(
            f"{table.tomo_id}: no particle above the cutoff {table.cutoff:.4g}; wrote "
            f"an empty {star.name}. Lower -c, raise --number-of-false-positives or "
            "check the mask"
        )
    if imod:
        from tmfast.io.imod import write_imod_points

        nz, ny, nx = table.tomo_shape_zyx
        write_imod_points(
            mod,
            table.positions_xyz.astype(float),
            radius_px=table.particle_radius_vox,
            object_names=[table.tomo_id],
            dims_xyz=(nx, ny, nz),
            pixel_size_a=table.voxel_size_a,
            overwrite=overwrite,
        )
    if not no_plots:
        from tmfast.extraction.plots import plot_extraction, plot_tophat
        from tmfast.extraction.qc import plot_qc

        plot_extraction(table, plots, n_bins=plot_bins, overwrite=overwrite)
        if table.tophat is not None:
            plot_tophat(
                table.tophat,
                tophat_plots,
                title=f"{table.tomo_id}: top-hat",
                overwrite=overwrite,
            )
        try:
            plot_qc(table, qc, overwrite=overwrite)
        except FormatError as exc:
            logger.warning("QC picture skipped: %s", exc)
    typer.echo(f"{table.tomo_id}: {len(table)} particles -> {star}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("extract", no_args_is_help=True)(extract)
