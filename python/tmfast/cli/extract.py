"""`tmfast extract`: particles from a match job's score maps.

Flags follow ``pytom_extract_candidates.py``; RELION5 columns are the default.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tmfast.cli._flags import cli_flags
from tmfast.errors import ConfigError, FormatError

if TYPE_CHECKING:
    from tmfast.extraction.candidates import CandidateTable
    from tmfast.extraction.star_columns import Relion5TomogramGeometry
    from tmfast.matching.job import MatchJob

logger = logging.getLogger(__name__)

_IO = "Input / Output"
_PICK = "Picking"
_OUT = "Output format"

#: Python parameter names (and phrases) of tmfast.extraction errors -> the flags of
#: ``tmfast extract``. The library names its parameters (it is called from Python
#: too); the command line says which flag to change.
EXTRACT_FLAGS: dict[str, str] = {
    "set ignore_tomogram_mask=True": "use --ignore-tomogram-mask",
    "run with tophat_filter=False": "run without --tophat-filter",
    "n_particles": "-n/--number-of-particles",
    "particle_diameter_a": "--particle-diameter",
    "cutoff": "-c/--cut-off",
    "n_false_positives": "--number-of-false-positives",
    "tomogram_mask": "--tomogram-mask",
    "tophat_connectivity": "--tophat-connectivity",
    "tophat_bins": "--tophat-bins",
}


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
    from tmfast._fileio import check_output_folder, check_writable
    from tmfast.extraction.pytom_job import load_job
    from tmfast.extraction.star_columns import relion5_tomogram_geometry

    _check_options(
        n_particles=n_particles,
        particle_diameter=particle_diameter,
        cut_off=cut_off,
        n_false_positives=n_false_positives,
        tophat_connectivity=tophat_connectivity,
        tophat_bins=tophat_bins,
        plot_bins=plot_bins,
    )
    # The job (a small JSON) names the outputs: refuse existing ones before any work.
    with cli_flags({"check the path of the job file": "check the -j path"}):
        mjob, jpath = load_job(job_file)
    out_dir = output_dir if output_dir is not None else jpath.resolve().parent
    check_output_folder(out_dir, "-o/--output-dir")
    stem = out_dir / mjob.tomo_id
    star = Path(f"{stem}_particles.star")
    mod = Path(f"{stem}_particles.mod")
    plots = [Path(f"{stem}_extraction.svg"), Path(f"{stem}_extraction.png")]
    qc = Path(f"{stem}_qc.png")
    tophat_plots = [Path(f"{stem}_tophat.svg"), Path(f"{stem}_tophat.png")]
    outputs = [star] + ([mod] if imod else [])
    if not no_plots:
        outputs += [*plots, qc] + (tophat_plots if tophat_filter else [])
    for p in outputs:
        check_writable(p, overwrite=overwrite)
    # a wrong tomograms.star is refused before the maps are read, too
    geo = None
    size_unbinned = None
    if relion5_tomograms_star is not None:
        geo = relion5_tomogram_geometry(
            relion5_tomograms_star, _relion_name(relion5_tomograms_star, mjob)
        )
        _check_geometry(geo, mjob, relion5_tomograms_star)
        size_unbinned = geo.size_xyz_unbinned

    # the output folder is made (or refused: read-only, permissions) before any
    # work; one this run made is removed again if it fails
    with _new_folder_removed_on_failure(out_dir):
        table = _extract(
            mjob,
            jpath,
            out_dir,
            geo=geo,
            size_unbinned=size_unbinned,
            n_particles=n_particles,
            particle_diameter=particle_diameter,
            cut_off=cut_off,
            n_false_positives=n_false_positives,
            tomogram_mask=tomogram_mask,
            ignore_tomogram_mask=ignore_tomogram_mask,
            tophat_filter=tophat_filter,
            tophat_connectivity=tophat_connectivity,
            tophat_bins=tophat_bins,
            relion5_compat=relion5_compat,
            imod=imod,
            no_plots=no_plots,
            plot_bins=plot_bins,
            overwrite=overwrite,
        )
    typer.echo(f"{table.tomo_id}: {len(table)} particles -> {star}")


@contextmanager
def _new_folder_removed_on_failure(folder: Path) -> Iterator[None]:
    """Create ``folder`` (one ConfigError line if it cannot be); if the body fails,
    remove the folders this made, when still empty: a failed run leaves no empty
    output folder behind."""
    from tmfast._fileio import make_folder, remove_empty_folders

    new = make_folder(folder, "the -o/--output-dir folder")
    try:
        yield
    except BaseException:
        remove_empty_folders(new)
        raise


def _extract(
    mjob: MatchJob,
    jpath: Path,
    out_dir: Path,
    *,
    geo: Relion5TomogramGeometry | None,
    size_unbinned: tuple[float, float, float] | None,
    n_particles: int,
    particle_diameter: float | None,
    cut_off: float | None,
    n_false_positives: float,
    tomogram_mask: Path | None,
    ignore_tomogram_mask: bool,
    tophat_filter: bool,
    tophat_connectivity: int,
    tophat_bins: int,
    relion5_compat: bool,
    imod: bool,
    no_plots: bool,
    plot_bins: int,
    overwrite: bool,
) -> CandidateTable:
    """Pick the particles of ``mjob`` and write its outputs into ``out_dir``."""
    from tmfast._fileio import check_writable, make_folder
    from tmfast.extraction import extract_candidates

    stem = out_dir / mjob.tomo_id
    star = Path(f"{stem}_particles.star")
    mod = Path(f"{stem}_particles.mod")
    plots = [Path(f"{stem}_extraction.svg"), Path(f"{stem}_extraction.png")]
    qc = Path(f"{stem}_qc.png")
    tophat_plots = [Path(f"{stem}_tophat.svg"), Path(f"{stem}_tophat.png")]
    with cli_flags(EXTRACT_FLAGS):
        table = extract_candidates(
            mjob,
            n_particles=n_particles,
            particle_diameter_a=particle_diameter,
            cutoff=cut_off,
            n_false_positives=n_false_positives,
            tomogram_mask=tomogram_mask,
            ignore_tomogram_mask=ignore_tomogram_mask,
            tophat_filter=tophat_filter,
            tophat_connectivity=tophat_connectivity,
            tophat_bins=tophat_bins,
            job_dir=jpath.parent,
        )
    if geo is not None and table.tilt_series_pixel_size_a is None:
        table = dataclasses.replace(
            table,
            tilt_series_pixel_size_a=geo.tilt_series_pixel_size_a,
            binning=geo.binning,
        )
    if geo is not None:
        # the row's name, which RELION matches the particles to (not the file stem)
        table = dataclasses.replace(table, relion_tomo_name=geo.tomo_name)
    if len(table) == 0 and not math.isfinite(table.cutoff):
        raise ConfigError(
            f"{table.tomo_id}: no voxel left to pick (tomogram mask, border of "
            f"{table.particle_radius_vox:.0f} voxels, unsearched region); nothing "
            "written. Check the mask and --particle-diameter"
        )
    if len(table) == 0:
        # An honestly empty tomogram is a result, not an error (batches go on).
        logger.warning(
            "%s: no particle above the cutoff %.4g; writing an empty %s (lower -c, "
            "raise --number-of-false-positives or check the mask if particles "
            "were expected)",
            table.tomo_id,
            table.cutoff,
            star.name,
        )

    # Everything is written into a hidden staging folder beside the outputs and
    # renamed into place only when every file succeeded: no partial result remains.
    # again: a parallel extraction that failed may have removed the (then empty)
    # folder it had made too
    make_folder(out_dir, "the -o/--output-dir folder")
    try:
        staging = Path(
            tempfile.mkdtemp(prefix=f".{table.tomo_id}_extract.", dir=out_dir)
        )
    except OSError as exc:
        raise ConfigError(
            f"{out_dir}: cannot write there ({exc.strerror or exc}); nothing "
            "written: choose another -o/--output-dir"
        ) from None
    try:
        written = _write_outputs(
            table,
            staging,
            relion5_compat=relion5_compat,
            size_unbinned=size_unbinned,
            imod=imod,
            plots=not no_plots,
            plot_bins=plot_bins,
        )
        finals = [out_dir / p.name for p in written]
        for p in finals:  # recheck: another run may have written meanwhile
            check_writable(p, overwrite=overwrite)
        for src, dst in zip(written, finals, strict=True):
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # --overwrite: the outputs of an earlier run that this one did not write (its
    # .mod, plots or QC picture) would pass for this run's: remove them
    for p in {star, mod, *plots, qc, *tophat_plots} - set(finals):
        if p.is_file():
            p.unlink()
            logger.info("removed %s, left by an earlier extraction", p.name)
    return table


def _relion_name(star: Path, job: MatchJob) -> str:
    """The ``rlnTomoName`` to look up for ``job`` in a tomograms.star.

    The job's RELION5 name when its metadata has one; else the file stem when a row
    has that name; else the stem without the reconstruction decorations batch plan
    recognises (``rec_``, Warp's ``_10.00Apx``, AreTomo's ``_Vol``, half-set tags),
    so that ``TS_01_10.00Apx`` finds the row ``TS_01``.
    """
    from tmfast.batch.relion5 import normalise_tomogram_stem
    from tmfast.extraction.star_columns import read_relion5_tomograms

    md = job.metadata
    if md is not None and md.tomo_name:
        return str(md.tomo_name)
    names = read_relion5_tomograms(star)
    if job.tomo_id in names:
        return job.tomo_id
    stem = normalise_tomogram_stem(job.tomo_id + ".mrc")[0]
    return stem if stem in names else job.tomo_id


def _check_geometry(geo: Relion5TomogramGeometry, job: MatchJob, path: Path) -> None:
    """Refuse a tomograms.star row that does not describe the matched tomogram.

    Its voxel size (tilt-series pixel size x binning) must be the job's, and its
    bin-1 size divided by the binning the tomogram's size (within 2 voxels or
    5 %: rounding and padding differ between reconstruction programs): otherwise
    every centred coordinate would be silently scaled or shifted.

    Raises
    ------
    ConfigError
        Naming the file, the row and the mismatch.
    """
    voxel_a = geo.tilt_series_pixel_size_a * geo.binning
    if abs(voxel_a - job.voxel_size_a) > 1e-2 * job.voxel_size_a:
        raise ConfigError(
            f"{path}: {geo.tomo_name!r} has rlnTomoTiltSeriesPixelSize "
            f"{geo.tilt_series_pixel_size_a:g} x rlnTomoTomogramBinning "
            f"{geo.binning:g} = {voxel_a:.4g} Å voxels but job {job.tomo_id!r} "
            f"matched {job.voxel_size_a:.4g} Å voxels; give the tomograms.star of "
            "the reconstruction that was matched"
        )
    if geo.size_xyz_unbinned is not None:
        nz, ny, nx = (int(v) for v in job.tomo_shape_zyx)
        binned = [v / geo.binning for v in geo.size_xyz_unbinned]
        if any(
            abs(b - n) > max(2.0, 0.05 * n)
            for b, n in zip(binned, (nx, ny, nz), strict=True)
        ):
            sx, sy, sz = (f"{v:g}" for v in geo.size_xyz_unbinned)
            raise ConfigError(
                f"{path}: {geo.tomo_name!r} has rlnTomoSize {sx} x {sy} x {sz} at "
                f"binning {geo.binning:g} but job {job.tomo_id!r} matched a "
                f"{nx} x {ny} x {nz} tomogram; give the tomograms.star of the "
                "reconstruction that was matched"
            )


def _check_options(
    *,
    n_particles: int,
    particle_diameter: float | None,
    cut_off: float | None,
    n_false_positives: float,
    tophat_connectivity: int,
    tophat_bins: int,
    plot_bins: int,
) -> None:
    """Refuse invalid options before any file is read or written."""
    if n_particles < 1:
        raise ConfigError(f"-n/--number-of-particles {n_particles} must be at least 1")
    if particle_diameter is not None and not (
        math.isfinite(particle_diameter) and particle_diameter > 0
    ):
        raise ConfigError(
            f"--particle-diameter {particle_diameter:g} must be a positive "
            "diameter in Å"
        )
    if cut_off is not None and not math.isfinite(cut_off):
        raise ConfigError(
            f"-c/--cut-off {cut_off} must be a finite score (negative: no cutoff)"
        )
    if not (math.isfinite(n_false_positives) and n_false_positives > 0):
        raise ConfigError(
            f"--number-of-false-positives {n_false_positives:g} must be > 0 "
            "(e.g. 1; < 1 is stricter)"
        )
    if tophat_connectivity not in (1, 2, 3):
        raise ConfigError(
            f"--tophat-connectivity {tophat_connectivity} must be 1, 2 or 3"
        )
    if tophat_bins < 8:
        raise ConfigError(f"--tophat-bins {tophat_bins} must be at least 8")
    if plot_bins < 1:
        raise ConfigError(f"--plot-bins {plot_bins} must be at least 1")


def _write_outputs(
    table: CandidateTable,
    folder: Path,
    *,
    relion5_compat: bool,
    size_unbinned: tuple[float, float, float] | None,
    imod: bool,
    plots: bool,
    plot_bins: int,
) -> list[Path]:
    """Write the STAR file, IMOD model and plots of ``table`` into ``folder``."""
    from tmfast.io.star import write_star

    stem = folder / table.tomo_id
    star = Path(f"{stem}_particles.star")
    write_star(
        star,
        table.to_star_blocks(
            relion5=relion5_compat, tomo_size_xyz_unbinned=size_unbinned
        ),
    )
    written = [star]
    if imod:
        from tmfast.io.imod import write_imod_points

        mod = Path(f"{stem}_particles.mod")
        nz, ny, nx = table.tomo_shape_zyx
        write_imod_points(
            mod,
            table.positions_xyz.astype(float),
            radius_px=table.particle_radius_vox,
            object_names=[table.tomo_id],
            dims_xyz=(nx, ny, nz),
            pixel_size_a=table.voxel_size_a,
        )
        written.append(mod)
    if plots:
        from tmfast.extraction.plots import plot_extraction, plot_tophat
        from tmfast.extraction.qc import plot_qc

        written += plot_extraction(
            table,
            [Path(f"{stem}_extraction.svg"), Path(f"{stem}_extraction.png")],
            n_bins=plot_bins,
        )
        if table.tophat is not None:
            written += plot_tophat(
                table.tophat,
                [Path(f"{stem}_tophat.svg"), Path(f"{stem}_tophat.png")],
                title=f"{table.tomo_id}: top-hat",
            )
        qc = Path(f"{stem}_qc.png")
        try:
            plot_qc(table, qc)
            written.append(qc)
        except FormatError as exc:
            logger.warning("QC picture skipped: %s", exc)
    return written


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("extract", no_args_is_help=True)(extract)
