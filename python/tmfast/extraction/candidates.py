"""Candidate particles from score and angle maps: :func:`extract_candidates`.

Steps (pytom-match-pick's ``extract_particles`` with its defects fixed):

1. Read the job (tmfast or pytom-match-pick), its score and angle maps, and
   regenerate its angle set (checked against the recorded count and hash).
2. Build the candidate mask: searched voxels (finite score), the tomogram mask
   cropped to the search region (values ``<= 0`` excluded), and optionally the
   top-hat mask of sharp peaks.
3. Cutoff: automatic ``sqrt(2) * sigma * erfcinv(2 n_FP / N)`` from the job's
   statistics, a manual value, or none (a negative manual value, e.g. ``-c -1``,
   forces ``n_particles`` picks).
4. Greedy picking with a true spherical exclusion of radius ``diameter / 2``
   (in voxels) and a border of ``int(diameter / 2 / voxel)`` voxels on all faces
   (:func:`tmfast.extraction.peaks.find_peaks`).
5. Positions get the search origin added (full-tomogram voxels); angle indices
   become ZXZ angles and RELION ``(rot, tilt, psi)`` degrees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError, FormatError
from tmfast.extraction.cutoff import false_alarm_cutoff
from tmfast.extraction.pytom_job import load_job, locate_maps
from tmfast.extraction.star_columns import (
    PYTOM_COLUMNS,
    RELION5_COLUMNS,
    strip_prefix,
    voxels_to_centred_angstrom,
)
from tmfast.matching.job import ARRAY_SOURCE, MatchJob

if TYPE_CHECKING:
    from tmfast.extraction.tophat import TophatResult
    from tmfast.matching.engine import MatchResult

__all__ = [
    "CandidateTable",
    "candidates_from_maps",
    "extract_candidates",
    "job_angle_set",
    "job_tomogram_mask",
    "zxz_to_relion",
]

logger = logging.getLogger(__name__)


def zxz_to_relion(angles_zxz_rad: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """RELION ``(rot, tilt, psi)`` degrees for ZXZ radians (docs/conventions.md)."""
    from tmfast.geometry.rotations import zxz_to_relion_deg

    a = np.atleast_2d(np.asarray(angles_zxz_rad, dtype=np.float64)).reshape(-1, 3)
    if a.shape[0] == 0:
        return np.zeros((0, 3))
    return np.asarray(zxz_to_relion_deg(a), dtype=np.float64).reshape(-1, 3)


def job_angle_set(job: MatchJob) -> npt.NDArray[np.float64]:
    """Regenerate a job's angle set and check it against the job record.

    Raises
    ------
    FormatError
        If the regenerated set differs in size or hash from the one matched.
    """
    from tmfast.geometry.angles import angle_set, angle_set_sha256

    angles = np.asarray(
        angle_set(job.angular_search, symmetry=job.rotational_symmetry, optimal=False),
        dtype=np.float64,
    )
    if job.n_rotations and len(angles) != job.n_rotations:
        raise FormatError(
            f"job {job.tomo_id!r}: angle set {job.angular_search!r} (symmetry "
            f"{job.rotational_symmetry}) now has {len(angles)} rotations but the job "
            f"matched {job.n_rotations}; extract with the tmfast/healpix version "
            "that ran the match"
        )
    if job.angle_set_sha256 and angle_set_sha256(angles) != job.angle_set_sha256:
        raise FormatError(
            f"job {job.tomo_id!r}: regenerated angle set differs from the one matched "
            "(sha256 mismatch); extract with the tmfast version that ran the match"
        )
    return angles


@dataclasses.dataclass(frozen=True, kw_only=True)
class CandidateTable:
    """Extracted particles of one tomogram, in pick order (descending score).

    Attributes
    ----------
    tomo_id
        Tomogram name (file stem).
    positions_zyx
        ``(N, 3)`` int64 voxel indices ``(z, y, x)`` in the full tomogram.
    scores
        ``(N,)`` float32 LCCmax of each pick.
    angle_indices
        ``(N,)`` int64 rows of the job's angle set.
    angles_zxz_rad
        ``(N, 3)`` float64 ZXZ angles ``(phi, theta, psi)`` in radians.
    relion_angles_deg
        ``(N, 3)`` float64 RELION ``(rot, tilt, psi)`` in degrees.
    cutoff
        Score cutoff used; ``-inf`` when picks were forced (``-c -1``).
    search_std, search_space
        Background sigma and number of (voxel, rotation) pairs from the job.
    voxel_size_a
        Tomogram voxel size in Å.
    tomo_shape_zyx
        Full tomogram shape in voxels.
    particle_diameter_a
        Diameter used for exclusion and border, in Å.
    tilt_series_pixel_size_a, binning
        RELION5 tilt-series pixel size and tomogram binning, when the job has
        RELION5 metadata; ``None`` otherwise.
    tomogram
        Path of the tomogram (for the QC picture).
    n_false_positives
        n_FP used for the automatic cutoff.
    tophat
        The top-hat fit (without its mask) when the top-hat filter was used.
    relion_tomo_name
        RELION5 ``rlnTomoName`` from the job's metadata, when known; otherwise
        ``rlnTomoName`` is the tomogram name without its ``rec_`` prefix.
    """

    tomo_id: str
    positions_zyx: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    angle_indices: npt.NDArray[np.int64]
    angles_zxz_rad: npt.NDArray[np.float64]
    relion_angles_deg: npt.NDArray[np.float64]
    cutoff: float
    search_std: float
    search_space: int
    voxel_size_a: float
    tomo_shape_zyx: tuple[int, int, int]
    particle_diameter_a: float
    tilt_series_pixel_size_a: float | None = None
    binning: float | None = None
    tomogram: str = ""
    n_false_positives: float = 1.0
    tophat: TophatResult | None = None
    relion_tomo_name: str | None = None

    def __len__(self) -> int:
        """Number of picks."""
        return int(self.scores.shape[0])

    @property
    def positions_xyz(self) -> npt.NDArray[np.int64]:
        """``(N, 3)`` voxel indices ``(x, y, z)`` in the full tomogram."""
        out: npt.NDArray[np.int64] = self.positions_zyx[:, ::-1].copy()
        return out

    @property
    def particle_radius_vox(self) -> float:
        """Particle radius in tomogram voxels."""
        return self.particle_diameter_a / 2.0 / self.voxel_size_a

    def centred_coordinates_a(
        self, tomo_size_xyz_unbinned: tuple[float, float, float] | None = None
    ) -> npt.NDArray[np.float64]:
        """RELION5 centred coordinates ``(x, y, z)`` in Å (see :mod:`.star_columns`).

        Parameters
        ----------
        tomo_size_xyz_unbinned
            RELION5 ``rlnTomoSize{X,Y,Z}`` when known; otherwise the tomogram size
            times the binning.
        """
        nz, ny, nx = self.tomo_shape_zyx
        if self.tilt_series_pixel_size_a is not None:
            px = self.tilt_series_pixel_size_a
            # Without a recorded binning the tomogram voxel is binning x the tilt-series
            # pixel; assuming 1 would shrink every coordinate by the binning factor.
            b = float(self.binning or self.voxel_size_a / px)
        else:
            px, b = self.voxel_size_a, 1.0
        return voxels_to_centred_angstrom(
            self.positions_xyz,
            tomo_size_xyz_vox=(nx, ny, nz),
            pixel_size_a=px,
            binning=b,
            tomo_size_xyz_unbinned=tomo_size_xyz_unbinned,
        )

    def to_star_blocks(
        self,
        *,
        relion5: bool = True,
        strip: str = "rec_",
        tomo_size_xyz_unbinned: tuple[float, float, float] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Return ``{"particles": {column: values}}`` for ``write_star``.

        Parameters
        ----------
        relion5
            RELION5 columns (centred Å, ``rlnTomoName``, tilt-series pixel size);
            otherwise pytom-match-pick's default columns (voxel coordinates).
        strip
            Prefix removed from the tomogram name for ``rlnTomoName``.
        tomo_size_xyz_unbinned
            RELION5 ``rlnTomoSize{X,Y,Z}`` for exact centring, when known.
        """
        n = len(self)
        cut = self.cutoff if math.isfinite(self.cutoff) else -1.0
        common = {
            "rlnAngleRot": self.relion_angles_deg[:, 0].astype(np.float64),
            "rlnAngleTilt": self.relion_angles_deg[:, 1].astype(np.float64),
            "rlnAnglePsi": self.relion_angles_deg[:, 2].astype(np.float64),
            "rlnLCCmax": self.scores.astype(np.float64),
            "rlnCutOff": np.full(n, cut),
            "rlnSearchStd": np.full(n, self.search_std),
        }
        cols: dict[str, Any] = {}
        if relion5:
            xyz = self.centred_coordinates_a(tomo_size_xyz_unbinned)
            px = (
                self.tilt_series_pixel_size_a
                if self.tilt_series_pixel_size_a is not None
                else self.voxel_size_a
            )
            cols.update(
                rlnCenteredCoordinateXAngst=xyz[:, 0],
                rlnCenteredCoordinateYAngst=xyz[:, 1],
                rlnCenteredCoordinateZAngst=xyz[:, 2],
                **common,
                rlnTomoTiltSeriesPixelSize=np.full(n, px),
                rlnTomoName=[self.relion_tomo_name or strip_prefix(self.tomo_id, strip)]
                * n,
            )
            order = RELION5_COLUMNS
        else:
            xyz_v = self.positions_xyz.astype(np.int64)
            cols.update(
                rlnCoordinateX=xyz_v[:, 0],
                rlnCoordinateY=xyz_v[:, 1],
                rlnCoordinateZ=xyz_v[:, 2],
                **common,
                rlnDetectorPixelSize=np.full(n, self.voxel_size_a),
                rlnMicrographName=[self.tomo_id] * n,
            )
            order = PYTOM_COLUMNS
        return {"particles": {k: cols[k] for k in order}}


def _read_map(path: Path, what: str) -> tuple[npt.NDArray[Any], float]:
    from tmfast.io.mrc import read_volume

    try:
        return read_volume(path, require_voxel_size=False)
    except FormatError as exc:
        raise FormatError(f"{exc} (reading the {what})") from None


def _load_mask(
    mask: str | os.PathLike[str] | npt.ArrayLike,
    job: MatchJob,
) -> npt.NDArray[np.float32]:
    """The tomogram mask cropped to the search region, as float32."""
    if isinstance(mask, (str, os.PathLike)):
        p = Path(mask)
        if not p.is_file():
            raise FormatError(
                f"{p}: tomogram mask not found; pass an existing file as "
                "tomogram_mask or set ignore_tomogram_mask=True"
            )
        from tmfast.io.mrc import mapped_volume

        # mapped and cropped before any conversion: the mask may be tomogram-sized
        with contextlib.ExitStack() as stack:
            try:
                data = stack.enter_context(mapped_volume(p))
            except FormatError as exc:
                raise FormatError(f"{exc} (reading the tomogram mask)") from None
            return _crop_mask(data, job, str(p))
    return _crop_mask(np.asarray(mask), job, "tomogram mask")


def _crop_mask(
    arr: npt.NDArray[Any], job: MatchJob, name: str
) -> npt.NDArray[np.float32]:
    """``arr`` cropped to the search region of ``job``, as a float32 copy."""
    oz, oy, ox = job.search_origin_zyx
    sz, sy, sx = job.search_shape_zyx
    if tuple(arr.shape) == tuple(job.tomo_shape_zyx):
        arr = arr[oz : oz + sz, oy : oy + sy, ox : ox + sx]
    elif tuple(arr.shape) != tuple(job.search_shape_zyx):
        raise FormatError(
            f"{name}: shape (z, y, x) {tuple(arr.shape)} matches neither the tomogram "
            f"{tuple(job.tomo_shape_zyx)} nor the search region "
            f"{tuple(job.search_shape_zyx)}; give the mask of this tomogram"
        )
    a = np.array(arr, dtype=np.float32, order="C", copy=True)  # not a view of a map
    if a.size and float(a.max()) <= 0 < -float(a.min()):
        # A mask with no positive value but negative ones is an unsigned 0/255 mask
        # read as signed int8 (0/-1, pytom #270) that its header does not reveal:
        # take nonzero as inside.
        logger.warning(
            "%s: no positive values but negative ones; treating nonzero "
            "voxels as inside (unsigned mask stored as int8?)",
            name,
        )
        a = (a != 0).astype(np.float32)
    return a


def job_tomogram_mask(job: MatchJob, job_dir: Path | None) -> Path | None:
    """The tomogram mask recorded in ``job`` as a path to read, or ``None``.

    A relative path is taken as written when it exists (pytom records paths
    relative to where matching ran), otherwise relative to ``job_dir`` (the job
    file's folder). ``None`` when the job has no mask or its mask was an in-memory
    array (``ARRAY_SOURCE``), which cannot be re-read.
    """
    if job.tomogram_mask is None or job.tomogram_mask == ARRAY_SOURCE:
        return None
    rec = Path(job.tomogram_mask)
    if not rec.is_absolute() and not rec.exists() and job_dir is not None:
        rec = job_dir / rec
    return rec


def _particle_diameter(job: MatchJob, particle_diameter_a: float | None) -> float:
    """The diameter to use (given or the job's), checked against the tomogram.

    Raises
    ------
    ConfigError
        If the diameter is missing, not finite and positive, or larger than the
        tomogram's smallest extent (no particle would fit).
    """
    if particle_diameter_a is not None:
        d, src = float(particle_diameter_a), "particle_diameter_a="
    elif job.particle_diameter_a is not None:
        d, src = (
            float(job.particle_diameter_a),
            f"job {job.tomo_id!r}: particle diameter ",
        )
    else:
        raise ConfigError(
            f"job {job.tomo_id!r} records no particle diameter; pass "
            "particle_diameter_a=DIAMETER (Å, > 0)"
        )
    if not (math.isfinite(d) and d > 0):
        raise ConfigError(f"{src}{d:g} Å must be a positive diameter in Å")
    extent_a = min(int(v) for v in job.tomo_shape_zyx) * float(job.voxel_size_a)
    if d > extent_a:
        nz, ny, nx = (int(v) for v in job.tomo_shape_zyx)
        raise ConfigError(
            f"{src}{d:g} Å is larger than the tomogram ({nx} x {ny} x {nz} voxels "
            f"of {job.voxel_size_a:g} Å, smallest extent {extent_a:g} Å); give the "
            "particle diameter in Å"
        )
    return d


def extract_candidates(
    job_or_result: MatchJob | MatchResult | str | os.PathLike[str],
    *,
    n_particles: int,
    particle_diameter_a: float | None = None,
    cutoff: float | None = None,
    n_false_positives: float = 1.0,
    tomogram_mask: str | os.PathLike[str] | npt.ArrayLike | None = None,
    ignore_tomogram_mask: bool = False,
    tophat_filter: bool = False,
    tophat_connectivity: int = 1,
    tophat_bins: int = 50,
    job_dir: str | os.PathLike[str] | None = None,
) -> CandidateTable:
    """Pick particles from a job's score and angle maps.

    Parameters
    ----------
    job_or_result
        A :class:`~tmfast.matching.engine.MatchResult` (its in-memory maps, angle
        set and tomogram mask are used; nothing is read), a :class:`MatchJob`, or
        the path of a tmfast or pytom-match-pick ``{tomo_id}_job.json``.
    n_particles
        Maximum number of picks.
    particle_diameter_a
        Particle diameter in Å (exclusion sphere of radius diameter/2 and border);
        default: the job's.
    cutoff
        Manual score cutoff (picks must score above it). ``None``: the automatic
        false-alarm cutoff. A negative value disables the cutoff and forces up to
        ``n_particles`` picks.
    n_false_positives
        Expected number of background picks above the automatic cutoff.
    tomogram_mask
        Path or ``(z, y, x)`` array of the full tomogram (or the search region);
        voxels ``<= 0`` are excluded. Default: the job's mask.
    ignore_tomogram_mask
        Ignore both the given and the job's masks.
    tophat_filter, tophat_connectivity, tophat_bins
        Keep only sharp peaks (:func:`tmfast.extraction.tophat.tophat_mask`).
    job_dir
        Folder against which relative map paths of a :class:`MatchJob` are
        resolved (default: the job's output folder).

    Returns
    -------
    CandidateTable
        The picks, possibly empty.

    Raises
    ------
    ConfigError
        If an option is invalid (no diameter, no statistics for the automatic
        cutoff, ...).
    FormatError
        If the job, its maps or the mask are missing, unreadable or of the wrong
        shape, or the angle map refers to rotations outside the angle set.
    """
    from tmfast.matching.engine import MatchResult as _MatchResult

    job = job_or_result
    if isinstance(job, _MatchResult):
        res_mask: str | os.PathLike[str] | npt.ArrayLike | None = None
        if not ignore_tomogram_mask:
            res_mask = tomogram_mask if tomogram_mask is not None else job.tomogram_mask
        return candidates_from_maps(
            job.job,
            job.scores,
            job.angles,
            n_particles=n_particles,
            particle_diameter_a=particle_diameter_a,
            cutoff=cutoff,
            n_false_positives=n_false_positives,
            tomogram_mask=res_mask,
            tophat_filter=tophat_filter,
            tophat_connectivity=tophat_connectivity,
            tophat_bins=tophat_bins,
            angle_set=job.angle_set,
        )
    if isinstance(job, MatchJob):
        mjob, jdir = job, Path(job_dir) if job_dir is not None else None
    else:
        mjob, jpath = load_job(job)
        jdir = jpath.parent
    if n_particles < 1:
        raise ConfigError(f"n_particles={n_particles} must be at least 1")
    _particle_diameter(mjob, particle_diameter_a)  # refuse before reading the maps
    if isinstance(mjob.angular_search, str) and jdir is not None:
        # a relative rotation-file path recorded in the job is relative to the job
        rel = Path(mjob.angular_search)
        if not rel.is_absolute() and not rel.exists() and (jdir / rel).is_file():
            mjob = mjob.with_updates(angular_search=str(jdir / rel))
    scores_path, angles_path = locate_maps(mjob, jdir)
    scores_raw, score_voxel = _read_map(scores_path, "score map")
    angle_map, _ = _read_map(angles_path, "angle map")
    if score_voxel > 0 and abs(score_voxel - mjob.voxel_size_a) > 1e-3 * max(
        1.0, mjob.voxel_size_a
    ):
        logger.warning(
            "%s: header voxel size %.4g Å differs from the job's %.4g Å; "
            "using the job's",
            scores_path,
            score_voxel,
            mjob.voxel_size_a,
        )
    mask_src: str | os.PathLike[str] | npt.ArrayLike | None = None
    if not ignore_tomogram_mask:
        mask_src = tomogram_mask
        if mask_src is None and mjob.tomogram_mask == ARRAY_SOURCE:
            logger.warning(
                "%s: the job's tomogram mask was an array and cannot be re-read; "
                "extracting without it (pass tomogram_mask= to use one)",
                mjob.tomo_id,
            )
        elif mask_src is None:
            mask_src = job_tomogram_mask(mjob, jdir)
    return candidates_from_maps(
        mjob,
        scores_raw,
        angle_map,
        n_particles=n_particles,
        particle_diameter_a=particle_diameter_a,
        cutoff=cutoff,
        n_false_positives=n_false_positives,
        tomogram_mask=mask_src,
        tophat_filter=tophat_filter,
        tophat_connectivity=tophat_connectivity,
        tophat_bins=tophat_bins,
        map_names=(str(scores_path), str(angles_path)),
    )


def candidates_from_maps(
    job: MatchJob,
    scores: npt.ArrayLike,
    angle_map: npt.ArrayLike,
    *,
    n_particles: int,
    particle_diameter_a: float | None = None,
    cutoff: float | None = None,
    n_false_positives: float = 1.0,
    tomogram_mask: str | os.PathLike[str] | npt.ArrayLike | None = None,
    tophat_filter: bool = False,
    tophat_connectivity: int = 1,
    tophat_bins: int = 50,
    map_names: tuple[str, str] = ("score map", "angle map"),
    angle_set: npt.ArrayLike | None = None,
) -> CandidateTable:
    """Pick particles from in-memory score and angle maps of ``job``.

    The arrays are ``(z, y, x)`` maps of the job's search region (score float32,
    angle indices float32 or integer). Other parameters and errors as for
    :func:`extract_candidates`; ``tomogram_mask`` ``None`` means no mask.
    ``angle_set`` is the ``(N, 3)`` ZXZ-radian rotation list the angle map indexes
    (e.g. ``result.angle_set``); default: regenerated from the job and checked
    against its hash.

    Returns
    -------
    CandidateTable
        The picks, possibly empty.

    Raises
    ------
    ConfigError, FormatError
        As :func:`extract_candidates`.
    """
    from tmfast.extraction.peaks import find_peaks

    mjob = job
    scores_path, angles_path = map_names
    if n_particles < 1:
        raise ConfigError(f"n_particles={n_particles} must be at least 1")
    diameter = _particle_diameter(mjob, particle_diameter_a)
    radius_vox = diameter / 2.0 / mjob.voxel_size_a
    border_vox = int(radius_vox)
    shape = tuple(int(v) for v in mjob.search_shape_zyx)
    for what, arr, pth in (
        ("score", scores, scores_path),
        ("angle", angle_map, angles_path),
    ):
        arr_shape = tuple(np.shape(arr))
        if arr_shape != shape:
            raise FormatError(
                f"{pth}: {what} map shape (z, y, x) {arr_shape} does not match "
                f"the job's search region {shape}; the maps belong to another job"
            )
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    angles_f = np.asarray(angle_map)
    if angles_f.dtype not in (np.float32, np.int32):
        angles_f = np.ascontiguousarray(angles_f, dtype=np.float32)

    if tophat_filter and tophat_connectivity not in (1, 2, 3):
        raise ConfigError(
            f"tophat_connectivity={tophat_connectivity} must be 1, 2 or 3"
        )
    if tophat_filter and tophat_bins < 8:
        raise ConfigError(f"tophat_bins={tophat_bins} must be at least 8")
    th = None
    mask: npt.NDArray[np.float32] | None = None
    if tomogram_mask is not None:
        mask = _load_mask(tomogram_mask, mjob)
    if tophat_filter:
        from tmfast.extraction.tophat import tophat_mask

        th = tophat_mask(
            scores,
            connectivity=tophat_connectivity,
            n_bins=tophat_bins,
            n_false_positives=n_false_positives,
        )
        keep = th.mask.astype(np.float32)
        mask = keep if mask is None else mask * keep

    stats = mjob.stats
    search_std = float(stats.std) if stats is not None else float("nan")
    search_space = int(stats.search_space) if stats is not None else 0
    if cutoff is None:
        if stats is None:
            raise ConfigError(
                f"job {mjob.tomo_id!r} has no search statistics (matching did not "
                "finish?); give a manual cutoff=VALUE"
            )
        used_cutoff = false_alarm_cutoff(
            search_std, search_space, n_false_positives=n_false_positives
        )
        peak_cutoff: float | None = used_cutoff
    elif cutoff < 0:
        used_cutoff, peak_cutoff = float("-inf"), None
    else:
        used_cutoff = peak_cutoff = float(cutoff)

    peaks = find_peaks(
        scores,
        n_peaks=int(n_particles),
        exclusion_radius_vox=float(radius_vox),
        angle_map=angles_f,
        cutoff=peak_cutoff,
        mask=mask,
        border_vox=border_vox,
    )
    idx = np.asarray(peaks.angle_indices, dtype=np.int64)
    if angle_set is not None:
        angle_list = np.asarray(angle_set, dtype=np.float64)
        if angle_list.ndim != 2 or angle_list.shape[1] != 3:
            raise FormatError(
                f"angle_set: shape {angle_list.shape} is not (N, 3) ZXZ radians"
            )
        if mjob.n_rotations and len(angle_list) != mjob.n_rotations:
            raise FormatError(
                f"angle_set: {len(angle_list)} rotations but the job searched "
                f"{mjob.n_rotations}; pass the job's own angle set"
            )
    else:
        angle_list = job_angle_set(mjob) if len(idx) else np.zeros((0, 3))
    if len(idx) and (idx.min() < 0 or idx.max() >= len(angle_list)):
        raise FormatError(
            f"{angles_path}: angle indices {int(idx.min())}..{int(idx.max())} at the "
            f"picks fall outside the job's {len(angle_list)} rotations; the angle map "
            "belongs to another job"
        )
    zxz = angle_list[idx] if len(idx) else np.zeros((0, 3))
    pos = np.asarray(peaks.positions_zyx, dtype=np.int64).reshape(-1, 3) + np.asarray(
        mjob.search_origin_zyx, dtype=np.int64
    )
    md = mjob.metadata
    table = CandidateTable(
        tomo_id=mjob.tomo_id,
        positions_zyx=pos,
        scores=np.asarray(peaks.scores, dtype=np.float32),
        angle_indices=idx,
        angles_zxz_rad=zxz,
        relion_angles_deg=zxz_to_relion(zxz),
        cutoff=used_cutoff,
        search_std=search_std,
        search_space=search_space,
        voxel_size_a=float(mjob.voxel_size_a),
        tomo_shape_zyx=tuple(int(v) for v in mjob.tomo_shape_zyx),  # type: ignore[arg-type]
        particle_diameter_a=float(diameter),
        tilt_series_pixel_size_a=None if md is None else md.tilt_series_pixel_size_a,
        binning=None if md is None else md.binning,
        tomogram=mjob.tomogram,
        n_false_positives=n_false_positives,
        tophat=None if th is None else th.without_mask(),
        relion_tomo_name=None if md is None else md.tomo_name,
    )
    logger.info(
        "%s: %d picks above cutoff %.4g (sigma %.4g, diameter %.1f Å)",
        mjob.tomo_id,
        len(table),
        used_cutoff,
        search_std,
        diameter,
    )
    return table
