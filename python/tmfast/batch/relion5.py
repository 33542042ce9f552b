"""RELION5 tomography projects: tomograms.star plus the per-tilt-series STAR files.

A RELION5 Tomograms job folder holds ``tomograms.star`` (block ``data_global``, one
row per tilt series), ``tilt_series/<rlnTomoName>.star`` (one row per tilt image) and
``tomograms/rec_<rlnTomoName>.mrc``. Paths inside the STAR files are relative to the
RELION project folder, which is found by walking up from tomograms.star.

Per-tilt values are taken row-wise and then sorted by the nominal stage tilt angle,
because RELION writes acquisition order after Import/MotionCorr/CtfFind and tilt
order after ExcludeTiltImages/AlignTiltSeries. Defocus is ``(rlnDefocusU +
rlnDefocusV) / 2``; RELION writes Å, Warp-derived files write µm, so the unit is
checked from the magnitude.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from tmfast.batch.manifest import TomogramEntry
from tmfast.errors import FormatError
from tmfast.extraction.star_columns import (
    Relion5TomogramRow,
    read_relion5_tomogram_rows,
    star_number,
)
from tmfast.io.star import read_star
from tmfast.metadata import TiltSeriesMetadata

__all__ = [
    "normalise_tomogram_stem",
    "read_relion5_metadata",
    "read_relion5_project",
]

logger = logging.getLogger(__name__)

_TOMO_EXTS = (".mrc", ".rec", ".st", ".map")
_HALF_RE = re.compile(
    r"(?:_|\.)(half1|half2|half_1|half_2|EVN|ODD|even|odd)(?=$|_)", re.IGNORECASE
)
_APX_RE = re.compile(r"_\d+(?:\.\d+)?Apx$")


def normalise_tomogram_stem(filename: str) -> tuple[str, str | None]:
    """Return the tomogram name a reconstruction file stands for, and its half set.

    Strips the extension, a leading ``rec_``, Warp's ``_<pixel>Apx`` suffix,
    AreTomo's ``_Vol`` and a ``.tomostar`` suffix; detects half-set markers
    (``_half1``, ``_half2``, ``_EVN``, ``_ODD``).

    Parameters
    ----------
    filename
        File name or path of a reconstruction.

    Returns
    -------
    name, half
        The normalised name and ``"half1"``/``"half2"`` or ``None``.
    """
    stem = Path(filename).name
    for ext in _TOMO_EXTS:
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    half: str | None = None
    m = _HALF_RE.search(stem)
    if m:
        tag = m.group(1).lower()
        half = "half1" if tag in ("half1", "half_1", "evn", "even") else "half2"
        stem = stem[: m.start()] + stem[m.end() :]
    if stem.startswith("rec_"):
        stem = stem[4:]
    stem = _APX_RE.sub("", stem)
    for suffix in ("_Vol", ".tomostar", "_rec"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem, half


def _roots(star: Path, project_dir: Path | None) -> list[Path]:
    roots: list[Path] = []
    if project_dir is not None:
        roots.append(project_dir.resolve())
    d = star.resolve().parent
    roots.extend([d, *d.parents])
    return roots


def _resolve(relpath: str, roots: Sequence[Path]) -> Path | None:
    p = Path(relpath)
    if p.is_absolute():
        return p if p.exists() else None
    for r in roots:
        cand = r / p
        if cand.exists():
            return cand
    return None


def _row(
    rows: Sequence[Relion5TomogramRow], tomo_name: str, path: Path
) -> Relion5TomogramRow:
    for row in rows:
        if row.tomo_name == tomo_name:
            return row
    names = ", ".join(r.tomo_name for r in rows[:8])
    raise FormatError(f"{path}: no tomogram named {tomo_name!r}; names there: {names}")


def _tilt_series_star(
    rec: dict[str, str], star: Path, project_dir: Path | None
) -> Path | None:
    rel = rec.get("rlnTomoTiltSeriesStarFile")
    if rel is None:
        return None
    found = _resolve(rel, _roots(star, project_dir))
    if found is not None:
        return found
    fallback = star.parent / "tilt_series" / Path(rel).name
    return fallback if fallback.exists() else None


def _missing_tilt_series(
    rec: dict[str, str], star: Path, project_dir: Path | None, name: str
) -> str:
    """Say where a tilt-series STAR was looked for, and how to point to it."""
    rel = rec["rlnTomoTiltSeriesStarFile"]
    where = (
        f"--project-dir {project_dir.resolve()}"
        if project_dir is not None
        else f"{star.resolve().parent} and its parent folders"
    )
    top = Path(rel).parts[0] if Path(rel).parts else rel
    return (
        f"{name}: tilt-series STAR {rel} not found under {where} (nor in "
        f"{star.resolve().parent / 'tilt_series'}); keep tomograms.star inside its "
        f"RELION project (the folder holding {top}/), or copy the tilt_series folder "
        f"beside it; tmfast batch plan also takes --project-dir <the folder holding "
        f"{top}/> (project_dir= in Python)"
    )


def _defocus_um(values: list[float], path: Path) -> tuple[float, ...]:
    finite = sorted(values)
    median = finite[len(finite) // 2]
    if median <= 0:
        raise FormatError(
            f"{path}: median defocus {median} is not positive (underfocus is positive "
            "in RELION); check rlnDefocusU/rlnDefocusV"
        )
    if median > 200.0:  # Å, as RELION writes it
        return tuple(v / 1e4 for v in values)
    if median < 50.0:  # µm, as Warp-derived STAR files write it
        logger.warning(
            "%s: defocus values (median %.3g) look like µm, not Å; reading them as µm",
            path,
            median,
        )
        return tuple(values)
    raise FormatError(
        f"{path}: median defocus {median} is neither Å (> 200) nor µm (< 50); "
        "check the rlnDefocusU/rlnDefocusV units"
    )


def read_relion5_metadata(
    tomograms_star: str | Path,
    tomo_name: str,
    *,
    project_dir: str | Path | None = None,
) -> TiltSeriesMetadata:
    """Read one tilt series' acquisition metadata from a RELION5 project.

    Parameters
    ----------
    tomograms_star
        ``tomograms.star`` of a RELION5 Tomograms job (block ``data_global``).
    tomo_name
        ``rlnTomoName`` of the tilt series.
    project_dir
        RELION project folder the STAR paths are relative to; by default the first
        ancestor of ``tomograms_star`` in which the path exists, then
        ``<folder of tomograms.star>/tilt_series/<file name>``.

    Returns
    -------
    TiltSeriesMetadata
        Tilts (nominal stage angles, degrees), defocus ((U+V)/2 in µm), accumulated
        pre-exposure dose (e⁻/Å²), optics and handedness, sorted by tilt angle.
        Defocus and dose are ``None`` when the STAR file lacks those columns.

    Raises
    ------
    FormatError
        If a file is missing, pre-RELION5, or lacks the tilt angles; if values are
        not numbers or the defocus unit cannot be told.
    """
    star = Path(tomograms_star)
    pdir = None if project_dir is None else Path(project_dir)
    row = _row(read_relion5_tomogram_rows(star), tomo_name, star)
    rec = row.values
    ts_path = _tilt_series_star(rec, star, pdir)
    if ts_path is None:
        if "rlnTomoTiltSeriesStarFile" in rec:
            raise FormatError(
                f"{star}: " + _missing_tilt_series(rec, star, pdir, tomo_name)
            )
        ts_path = star  # RELION 4 legacy layout: per-series blocks in the same file
    blocks = read_star(ts_path, as_text=True)
    block_name = tomo_name
    block = blocks.get(tomo_name)
    if block is None:
        others = [k for k in blocks if k != "global"]
        tilted = [k for k in others if "rlnTomoNominalStageTiltAngle" in blocks[k]]
        candidates = tilted or others
        if len(candidates) == 1:
            block_name = candidates[0]
            block = blocks[block_name]
            logger.warning(
                "%s: block data_%s does not match rlnTomoName %s; using it anyway",
                ts_path,
                block_name,
                tomo_name,
            )
        else:
            raise FormatError(
                f"{ts_path}: no block data_{tomo_name}; RELION5 names the block after "
                "rlnTomoName"
            )
    if "rlnTomoNominalStageTiltAngle" not in block:
        raise FormatError(
            f"{ts_path}: block data_{block_name} has no rlnTomoNominalStageTiltAngle "
            "column; give a RELION5 tilt-series STAR file"
        )
    n = len(block["rlnTomoNominalStageTiltAngle"])
    if n == 0:
        raise FormatError(f"{ts_path}: block data_{block_name} lists no tilt images")
    tilts = [
        star_number(v, "rlnTomoNominalStageTiltAngle", ts_path)
        for v in block["rlnTomoNominalStageTiltAngle"]
    ]
    dose: list[float] | None = None
    if "rlnMicrographPreExposure" in block:
        dose = [
            star_number(v, "rlnMicrographPreExposure", ts_path)
            for v in block["rlnMicrographPreExposure"]
        ]
    else:
        logger.warning("%s: no rlnMicrographPreExposure; no dose weighting", ts_path)
    defocus: tuple[float, ...] | None = None
    if "rlnDefocusU" in block and "rlnDefocusV" in block:
        mean = [
            0.5
            * (
                star_number(u, "rlnDefocusU", ts_path)
                + star_number(v, "rlnDefocusV", ts_path)
            )
            for u, v in zip(block["rlnDefocusU"], block["rlnDefocusV"], strict=True)
        ]
        defocus = _defocus_um(mean, ts_path)
    else:
        logger.warning("%s: no rlnDefocusU/V; no CTF model", ts_path)
    # Sort every per-tilt list by tilt angle (stable), never trusting row order.
    order = sorted(range(n), key=lambda i: tilts[i])

    def pick(vals: Sequence[float] | None) -> tuple[float, ...] | None:
        return None if vals is None else tuple(vals[i] for i in order)

    hand = row.number("rlnTomoHand")
    voltage = row.number("rlnVoltage")
    cs = row.number("rlnSphericalAberration")
    ac = row.number("rlnAmplitudeContrast")
    if defocus is not None and None in (voltage, cs, ac):
        raise FormatError(
            f"{star}: {tomo_name} has defocus values but lacks rlnVoltage, "
            "rlnSphericalAberration or rlnAmplitudeContrast"
        )
    return TiltSeriesMetadata(
        tilt_angles_deg=tuple(tilts[i] for i in order),
        defocus_um=pick(defocus),
        dose_e_per_a2=pick(dose),
        voltage_kv=voltage,
        spherical_aberration_mm=cs,
        amplitude_contrast=ac,
        defocus_handedness=0 if hand is None else round(hand),
        tilt_series_pixel_size_a=row.tilt_series_pixel_size_a,
        binning=row.binning,
        tomo_name=tomo_name,
    )


def _candidate_files(folders: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for d in folders:
        if d.is_dir():
            out.extend(
                sorted(
                    p
                    for p in d.iterdir()
                    if p.is_file() and p.suffix.lower() in _TOMO_EXTS
                )
            )
    return out


def _match_files(
    keys: Sequence[str], files: Sequence[Path], half: str | None
) -> list[Path]:
    norm = [(f, *normalise_tomogram_stem(f.name)) for f in files]
    exact = [f for f, name, h in norm if h == half and name in keys]
    if exact:
        return exact
    # Names with a prefix (e.g. a date): match on a '_' boundary, like pytom's endswith.
    return [
        f
        for f, name, h in norm
        if h == half and any(name.endswith("_" + k) for k in keys)
    ]


def read_relion5_project(
    tomograms_star: str | Path,
    *,
    project_dir: str | Path | None = None,
    tomogram_dir: str | Path | None = None,
    include_halves: bool = False,
    use_denoised: bool = False,
    voxel_size_a: float | None = None,
) -> list[TomogramEntry]:
    """List the tomograms of a RELION5 project with their reconstruction files.

    The reconstruction of each ``rlnTomoName`` is ``rlnTomoReconstructedTomogram``
    (or ``rlnTomoDenoisedTomogram``) when that file exists; otherwise a file in
    ``tomogram_dir`` (default: the ``tomograms`` folder beside tomograms.star) whose
    name, after removing ``rec_``, extensions, ``_Vol``, ``_<px>Apx`` and half-set
    suffixes, equals the tomogram name or the tilt-series STAR name (or ends with
    ``_<name>``). Half-set reconstructions are skipped unless ``include_halves``,
    which adds them as extra entries named ``<name>_half1``/``<name>_half2``.

    Parameters
    ----------
    tomograms_star
        RELION5 tomograms.star.
    project_dir
        RELION project folder (see :func:`read_relion5_metadata`).
    tomogram_dir
        Folder to look for reconstructions in.
    include_halves
        Also list half-set reconstructions as separate entries.
    use_denoised
        Prefer ``rlnTomoDenoisedTomogram`` over ``rlnTomoReconstructedTomogram``.
    voxel_size_a
        Tomogram voxel size in Å, for projects without pixel size and binning columns.

    Returns
    -------
    list of TomogramEntry
        One per tomogram (and half set), in tomograms.star order; entries that cannot
        be used carry their ``problems`` (missing reconstruction or tilt-series STAR,
        ambiguous file names, unknown voxel size).

    Raises
    ------
    FormatError
        If tomograms.star is missing, pre-RELION5 or not a tomograms table.
    """
    star = Path(tomograms_star)
    pdir = None if project_dir is None else Path(project_dir)
    rows = read_relion5_tomogram_rows(star)
    roots = _roots(star, pdir)
    folders = (
        [Path(tomogram_dir)]
        if tomogram_dir is not None
        else [star.parent / "tomograms"]
    )
    files = _candidate_files(folders)
    entries: list[TomogramEntry] = []
    claimed: dict[Path, str] = {}
    row_keys: dict[str, str] = {}  # file-name key -> rlnTomoName
    for row in rows:
        name, rec = row.tomo_name, row.values
        problems: list[str] = []
        ts_path = _tilt_series_star(rec, star, pdir)
        if ts_path is None and "rlnTomoTiltSeriesStarFile" in rec:
            problems.append(_missing_tilt_series(rec, star, pdir, name))
        ts_px, binning = row.tilt_series_pixel_size_a, row.binning
        vox = voxel_size_a
        if vox is None and ts_px is not None and binning is not None:
            vox = ts_px * binning
        size = (
            None
            if row.size_xyz_unbinned is None
            else tuple(round(v) for v in row.size_xyz_unbinned)
        )
        keys = [name]
        if ts_path is not None or "rlnTomoTiltSeriesStarFile" in rec:
            keys.append(Path(rec.get("rlnTomoTiltSeriesStarFile", "")).stem)
        label = (
            "rlnTomoDenoisedTomogram"
            if use_denoised
            else "rlnTomoReconstructedTomogram"
        )
        if label in rec:
            keys.append(normalise_tomogram_stem(rec[label])[0])
        keys = [k for k in dict.fromkeys(keys) if k]
        for k in keys:
            row_keys.setdefault(k, name)
        halves: list[str | None] = [None]
        if include_halves:
            halves += ["half1", "half2"]
        for half in halves:
            hp = list(problems)
            tomo: Path | None = None
            col = {
                None: label,
                "half1": "rlnTomoReconstructedTomogramHalf1",
                "half2": "rlnTomoReconstructedTomogramHalf2",
            }[half]
            if col in rec:
                tomo = _resolve(rec[col], roots)
            if tomo is None:
                found = _match_files(keys, files, half)
                if len(found) == 1:
                    tomo = found[0]
                elif len(found) > 1:
                    hp.append(
                        f"{name}: several reconstructions match "
                        f"({', '.join(f.name for f in found)}); give --tomogram-dir "
                        "with one file per tomogram"
                    )
                    for f in found:  # reported here, not again as unclaimed
                        claimed.setdefault(f.resolve(), name)
            if tomo is None and not any("several" in p for p in hp):
                if half is not None:
                    continue  # half sets are optional
                where = rec.get(col, "")
                hp.append(
                    f"{name}: no reconstruction found ({where or 'no path in STAR'}; "
                    f"searched {', '.join(str(f) for f in folders)})"
                )
            if tomo is not None:
                other = claimed.get(tomo.resolve())
                if other is not None:
                    hp.append(
                        f"{name}: reconstruction {tomo} is also matched to {other}"
                    )
                claimed[tomo.resolve()] = name
            if vox is None:
                hp.append(
                    f"{name}: voxel size unknown (no rlnTomoTiltSeriesPixelSize and "
                    "rlnTomoTomogramBinning); give --voxel-size"
                )
            entries.append(
                TomogramEntry(
                    tomo_name=name,
                    tomogram=tomo,
                    metadata_source=(
                        ts_path
                        if ts_path is not None
                        else None
                        if "rlnTomoTiltSeriesStarFile" in rec
                        else star
                    ),
                    voxel_size_a=vox,
                    tilt_series_pixel_size_a=ts_px,
                    binning=binning,
                    size_xyz=size,  # type: ignore[arg-type]
                    half=half,
                    problems=tuple(hp),
                )
            )
    # Reconstructions no tomograms.star row claims: tomograms without metadata.
    for f in files:
        name, half = normalise_tomogram_stem(f.name)
        if f.resolve() in claimed or (half is not None and not include_halves):
            continue
        if half is not None and any(e.tomo_name == name for e in entries):
            continue  # a half set of a listed tomogram that has no half columns
        owner = row_keys.get(name) or next(
            (row_keys[k] for k in row_keys if name.endswith("_" + k)), None
        )
        if owner is not None:
            # Named after a row whose STAR path exists and is used: not a
            # tomogram without metadata, and not a second entry for that row.
            logger.warning(
                "%s: not used; %s is matched with its rlnTomoReconstructedTomogram",
                f,
                owner,
            )
            continue
        entries.append(
            TomogramEntry(
                tomo_name=name,
                tomogram=f,
                half=half,
                problems=(
                    f"{f}: reconstruction without a row in {star.name} (no "
                    "metadata); remove it from the folder or give --tomo",
                ),
            )
        )
    return entries
