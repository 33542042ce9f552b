"""Read job files for extraction: tmfast's own and pytom-match-pick's.

pytom-match-pick (0.7 to 0.14) writes ``{tomo_id}_job.json`` from ``TMJob.__dict__``
(see the reference inventory §3.10). Its shapes and search ranges are ``(x, y, z)``
(pytom keeps arrays xyz internally and transposes on MRC read/write), so its
``{tomo_id}_scores.mrc`` and ``{tomo_id}_angles.mrc`` are ordinary MRC files that
mrcfile returns as ``(z, y, x)``, like tmfast's. Its angle list is not stored: it is
regenerated from ``rotation_file`` (a step in degrees, or a ZXZ-radian text file) and
``rotational_symmetry`` exactly as tmfast builds its own angle sets.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from tmfast._fileio import read_json
from tmfast.errors import FormatError
from tmfast.matching.job import MatchJob, SearchStats
from tmfast.metadata import TiltSeriesMetadata

__all__ = ["is_pytom_job", "load_job", "locate_maps", "match_job_from_pytom"]

logger = logging.getLogger(__name__)

_PYTOM_KEYS = ("job_key", "pytom_tm_version_number", "rotation_file", "tomo_shape")


def is_pytom_job(data: dict[str, Any]) -> bool:
    """Whether a job dict was written by pytom-match-pick."""
    return "tomo_shape_zyx" not in data and any(k in data for k in _PYTOM_KEYS)


def _search_range(
    rng: list[int] | None, size: int, axis: str, source: str
) -> tuple[int, int]:
    if rng is None:
        return 0, size
    start, end = int(rng[0]), int(rng[1])
    if not 0 <= start < end <= size:
        raise FormatError(
            f"{source}: search_{axis} {rng} is outside the tomogram (size {size})"
        )
    return start, end - start


def _pytom_metadata(meta: dict[str, Any] | None) -> TiltSeriesMetadata | None:
    if not isinstance(meta, dict):
        return None
    ps = meta.get("tilt_series_pixel_size")
    binning = meta.get("binning")
    if ps is None and binning is None:
        return None
    tilts = meta.get("tilt_angles") or [0.0]
    if not meta.get("angles_in_degrees", True):
        tilts = [math.degrees(float(t)) for t in tilts]
    # Only the pixel size and binning matter for extraction; the CTF is not rebuilt.
    return TiltSeriesMetadata(
        tilt_angles_deg=tuple(float(t) for t in tilts),
        tilt_series_pixel_size_a=None if ps is None else float(ps),
        binning=None if binning is None else float(binning),
    )


def match_job_from_pytom(data: dict[str, Any], *, source: str = "job") -> MatchJob:
    """Convert pytom-match-pick's job JSON into a :class:`MatchJob`.

    A malformed value (a non-number where a number belongs, a short search range,
    incomplete ``job_stats``) is a :class:`FormatError` naming the file.

    Parameters
    ----------
    data
        The parsed JSON object.
    source
        File name used in error messages.

    Returns
    -------
    MatchJob
        A job whose shapes are ``(z, y, x)``; ``angle_set_sha256`` is empty (pytom
        stores none), so the regenerated list is checked by its length only.

    Raises
    ------
    FormatError
        If a key extraction needs is missing, malformed or inconsistent.
    """
    try:
        return _match_job_from_pytom(data, source)
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FormatError(
            f"{source}: pytom-match-pick job has a missing or malformed value "
            f"({type(exc).__name__}: {exc}); give the {{tomo_id}}_job.json written "
            "by pytom_match_template.py"
        ) from None


def _match_job_from_pytom(data: dict[str, Any], source: str) -> MatchJob:
    try:
        shape_xyz = [int(v) for v in data["tomo_shape"]]
        voxel_size_a = float(data["voxel_size"])
        rotation_file = data.get("rotation_file", data.get("angle_increment"))
        tomo_id = str(data.get("tomo_id") or Path(str(data["tomogram"])).stem)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(
            f"{source}: pytom-match-pick job lacks a usable key ({exc}); "
            "give the {tomo_id}_job.json written by pytom_match_template.py"
        ) from None
    if rotation_file is None or len(shape_xyz) != 3:
        raise FormatError(
            f"{source}: pytom-match-pick job lacks rotation_file/tomo_shape"
        )
    ranges = [
        _search_range(data.get(f"search_{ax}"), n, ax, source)
        for ax, n in zip("xyz", shape_xyz, strict=True)
    ]
    try:
        angular: float | str = float(rotation_file)
    except (TypeError, ValueError):
        angular = str(rotation_file)
    stats_d = data.get("job_stats")
    stats = None
    if isinstance(stats_d, dict):
        stats = SearchStats(
            search_space=int(stats_d["search_space"]),
            variance=float(stats_d["variance"]),
            std=float(stats_d["std"]),
        )
    tomo_id_path = str(data.get("tomogram", tomo_id))
    out = str(data.get("output_dir", "."))
    return MatchJob(
        tomo_id=tomo_id,
        tomogram=tomo_id_path,
        template=str(data.get("template", "")),
        mask=str(data.get("mask", "")),
        output_dir=out,
        tomo_shape_zyx=(shape_xyz[2], shape_xyz[1], shape_xyz[0]),
        search_origin_zyx=(ranges[2][0], ranges[1][0], ranges[0][0]),
        search_shape_zyx=(ranges[2][1], ranges[1][1], ranges[0][1]),
        voxel_size_a=voxel_size_a,
        angular_search=angular,
        rotational_symmetry=int(data.get("rotational_symmetry", 1) or 1),
        n_rotations=int(data.get("n_rotations", 0) or 0),
        angle_set_sha256="",
        mask_is_spherical=bool(data.get("mask_is_spherical", True)),
        particle_diameter_a=(
            None
            if data.get("particle_diameter") is None
            else float(data["particle_diameter"])
        ),
        low_pass_a=data.get("low_pass"),
        high_pass_a=data.get("high_pass"),
        tomogram_mask=(
            None if data.get("tomogram_mask") is None else str(data["tomogram_mask"])
        ),
        metadata=_pytom_metadata(data.get("ts_metadata")),
        half_precision=str(data.get("output_dtype", "float32")) == "float16",
        stats=stats,
        scores_file=str(Path(out) / f"{tomo_id}_scores.mrc"),
        angles_file=str(Path(out) / f"{tomo_id}_angles.mrc"),
        backend="pytom-match-pick",
        tmfast_version="pytom-match-pick "
        + str(data.get("pytom_tm_version_number", "?")),
    )


def load_job(path: str | os.PathLike[str]) -> tuple[MatchJob, Path]:
    """Read a tmfast or pytom-match-pick job file.

    Parameters
    ----------
    path
        ``{tomo_id}_job.json`` of either tool.

    Returns
    -------
    tuple
        The job and the resolved path of the file (relative map paths are taken
        relative to its folder).

    Raises
    ------
    FormatError
        If the file is missing, not JSON, or not a job of either tool.
    """
    p = Path(path)
    data = read_json(p, what="job file", fix="check the path of the job file")
    if not isinstance(data, dict):
        raise FormatError(f"{p}: not a tmfast or pytom-match-pick job file")
    if is_pytom_job(data):
        return match_job_from_pytom(data, source=str(p)), p.resolve()
    try:
        job = MatchJob.from_dict(data, source=str(p))
        _check_numbers(job)
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # a hand-edited or truncated job: one line naming the file, no traceback
        raise FormatError(
            f"{p}: tmfast job has a missing or malformed value "
            f"({type(exc).__name__}: {exc}); rerun matching or restore the job file"
        ) from None
    return job, p.resolve()


def _check_numbers(job: MatchJob) -> None:
    """Convert the numbers extraction uses, raising ValueError/TypeError if bad."""
    for shape in (job.tomo_shape_zyx, job.search_origin_zyx, job.search_shape_zyx):
        if len([int(v) for v in shape]) != 3:
            raise ValueError(f"shape {list(shape)} is not (z, y, x)")
    if not float(job.voxel_size_a) > 0:
        raise ValueError(f"voxel_size_a {job.voxel_size_a} is not > 0")
    int(job.n_rotations)
    if job.particle_diameter_a is not None:
        float(job.particle_diameter_a)
    if job.stats is not None:
        int(job.stats.search_space), float(job.stats.std)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _resolve(
    candidate: str | None, job_dir: Path, default_name: str, output_dir: str
) -> Path:
    """The map file: beside the job file first, then where the job recorded it.

    A results folder that was copied or moved (``cp -r out out2``) keeps the
    absolute paths of the original in its job: the copy's own maps must be read,
    not silently the original's.
    """
    beside: list[Path] = []
    recorded: list[Path] = []
    if candidate:
        c = Path(candidate)
        beside.append(job_dir / c.name)
        recorded.append(c if c.is_absolute() else job_dir / c)
    beside.append(job_dir / default_name)
    recorded.append(Path(output_dir) / default_name)
    found = next((o for o in beside if o.is_file()), None)
    if found is not None:
        other = next((o for o in recorded if o.is_file()), None)
        if other is not None and not _same_file(found, other):
            logger.debug(
                "%s: using the map beside the job file, not the recorded %s",
                found,
                other,
            )
        return found
    return next((o for o in recorded if o.is_file()), (recorded or beside)[0])


def locate_maps(job: MatchJob, job_dir: Path | None = None) -> tuple[Path, Path]:
    """Return the score and angle map paths of a job.

    Maps beside the job file (``job_dir``) win: the recorded file names, then
    ``{tomo_id}_scores.mrc`` / ``_angles.mrc``. Only when none is there are the
    recorded paths used (relative ones against ``job_dir``), then the job's output
    folder (pytom-match-pick records it relative to where matching ran). A copied
    or moved results folder thus reads its own maps, never the original's.

    Raises
    ------
    FormatError
        If a map is not found.
    """
    d = job_dir if job_dir is not None else Path(job.output_dir)
    scores = _resolve(job.scores_file, d, f"{job.tomo_id}_scores.mrc", job.output_dir)
    angles = _resolve(job.angles_file, d, f"{job.tomo_id}_angles.mrc", job.output_dir)
    for kind, pth in (("score", scores), ("angle", angles)):
        if not pth.is_file():
            raise FormatError(
                f"{pth}: {kind} map of job {job.tomo_id!r} not found; run matching "
                "first or keep the maps beside the job file"
            )
    if scores.resolve().parent != angles.resolve().parent:
        logger.warning(
            "%s and %s: the score and angle maps of job %r are in different "
            "folders (one is missing beside the job file?); keep both beside it",
            scores,
            angles,
            job.tomo_id,
        )
    return scores, angles
