"""AreTomo3 output folders: ``.aln``, ``_CTF.txt``, ``_TLT.txt`` and ``_Imod/`` files.

For a prefix ``P`` AreTomo3 writes (formats from the AreTomo3 sources):

* ``P.aln``: header with ``RawSize`` (raw stack incl. dark images), ``DarkFrame``
  lines (0-based index in the tilt-sorted raw stack, section, tilt) and
  ``AlphaOffset``; then one row per *kept* (non-dark) image, tilt-sorted, whose last
  column is the tilt angle with the alpha offset applied.
* ``P_CTF.txt``: one row per *raw* image (dark ones included), tilt-sorted:
  1-based image number, defocus 1 and 2 (Å), astigmatism, phase shift, CC, fit
  resolution and (newer versions) the defocus handedness.
* ``P_TLT.txt``: one row per raw image, tilt-sorted: tilt, 1-based acquisition index
  and (newer versions) the dose of that image (e⁻/Å², not cumulative).
* ``P_Imod/`` (``-OutImod`` 1-3): ``P_st.tlt``, ``tilt.com`` (``EXCLUDELIST``,
  1-based sections), ``P_ctf.txt`` (IMOD defocus v3, nm) and the acquisition order
  list ``P_order_list.csv`` (OutImod 1, dark images included) or
  ``P_st_order_list.csv`` (OutImod 2/3, dark images removed).

The reader pairs raw rows with kept rows by the ``DarkFrame`` indices, checked
against the raw tilts of ``_TLT.txt`` (raw tilt + alpha offset = aligned tilt);
legacy files whose dark indices disagree are paired by tilt angle. It warns (or
raises, ``strict=True``) when the counts cannot be matched, and then leaves that
quantity out rather than misalign it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tmfast.batch.manifest import TomogramEntry
from tmfast.errors import FormatError
from tmfast.metadata import TiltSeriesMetadata

__all__ = [
    "AlnFile",
    "read_aln",
    "read_aretomo3",
    "read_aretomo3_project",
]

logger = logging.getLogger(__name__)

#: Largest difference (degrees) between a raw tilt plus the alpha offset and the
#: aligned tilt for the two to be the same image (both are written with 2 decimals).
_TILT_TOL_DEG = 0.05


@dataclasses.dataclass(frozen=True, kw_only=True)
class AlnFile:
    """The global part of an AreTomo ``.aln`` file.

    Attributes
    ----------
    raw_size_xyz
        ``RawSize``: image size and number of raw images (dark ones included).
    n_patches
        Number of local-alignment patches.
    dark_frames
        ``(index, section, tilt_deg)`` per dark image; index is 0-based in the
        tilt-sorted raw stack.
    alpha_offset_deg, beta_offset_deg
        Tilt offsets; the alpha offset is included in ``tilt_angles_deg``.
    thickness_px
        Sample thickness, if written.
    sections
        SEC column of the kept images.
    tilt_axis_deg
        ROT column (tilt-axis angle) of the kept images.
    tilt_angles_deg
        TILT column of the kept images (tilt-sorted).
    """

    raw_size_xyz: tuple[int, int, int]
    n_patches: int
    dark_frames: tuple[tuple[int, int, float], ...]
    alpha_offset_deg: float
    beta_offset_deg: float
    thickness_px: int | None
    sections: tuple[int, ...]
    tilt_axis_deg: tuple[float, ...]
    tilt_angles_deg: tuple[float, ...]

    @property
    def n_raw(self) -> int:
        """Number of raw images, dark ones included."""
        return self.raw_size_xyz[2]

    @property
    def n_kept(self) -> int:
        """Number of aligned (non-dark) images."""
        return len(self.tilt_angles_deg)


def read_aln(path: str | Path) -> AlnFile:
    """Read the header and global alignment rows of an AreTomo ``.aln`` file.

    Parameters
    ----------
    path
        ``.aln`` file.

    Returns
    -------
    AlnFile
        Header values and one entry per kept image.

    Raises
    ------
    FormatError
        If the file is missing, has no ``RawSize`` or no alignment rows.
    """
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except FileNotFoundError:
        raise FormatError(
            f"{p}: .aln file not found; check the AreTomo3 folder"
        ) from None
    raw: tuple[int, int, int] | None = None
    patches = 0
    darks: list[tuple[int, int, float]] = []
    alpha = beta = 0.0
    thickness: int | None = None
    secs: list[int] = []
    rots: list[float] = []
    tilts: list[float] = []
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            if "Local Alignment" in s:
                break
            m = re.match(r"#\s*(\w+)\s*=\s*(.*)$", s)
            if not m:
                continue
            key, val = m.group(1), m.group(2).split()
            try:
                if key == "RawSize":
                    raw = (int(val[0]), int(val[1]), int(val[2]))
                elif key == "NumPatches":
                    patches = int(val[0])
                elif key == "DarkFrame":
                    darks.append((int(val[0]), int(val[1]), float(val[2])))
                elif key == "AlphaOffset":
                    alpha = float(val[0])
                elif key == "BetaOffset":
                    beta = float(val[0])
                elif key == "Thickness":
                    thickness = int(float(val[0]))
            except (IndexError, ValueError):
                raise FormatError(
                    f"{p}:{lineno}: malformed header line {s!r}"
                ) from None
            continue
        fields = s.split()
        if len(fields) < 10:
            continue
        try:
            secs.append(int(fields[0]))
            rots.append(float(fields[1]))
            tilts.append(float(fields[9]))
        except ValueError:
            raise FormatError(f"{p}:{lineno}: malformed alignment row {s!r}") from None
    if raw is None:
        raise FormatError(f"{p}: no '# RawSize' line; not an AreTomo .aln file")
    if not tilts:
        raise FormatError(f"{p}: no global alignment rows; the .aln file is incomplete")
    return AlnFile(
        raw_size_xyz=raw,
        n_patches=patches,
        dark_frames=tuple(darks),
        alpha_offset_deg=alpha,
        beta_offset_deg=beta,
        thickness_px=thickness,
        sections=tuple(secs),
        tilt_axis_deg=tuple(rots),
        tilt_angles_deg=tuple(tilts),
    )


def _rows(path: Path, min_cols: int) -> list[list[float]]:
    out: list[list[float]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#") or s[0].isalpha():
            continue
        fields = s.replace(",", " ").split()
        if len(fields) < min_cols:
            raise FormatError(
                f"{path}:{lineno}: expected {min_cols} columns, got {s!r}"
            )
        try:
            out.append([float(f) for f in fields])
        except ValueError:
            raise FormatError(f"{path}:{lineno}: not numbers: {s!r}") from None
    return out


def _resolve_prefix(prefix_or_dir: str | Path) -> tuple[Path, str]:
    p = Path(prefix_or_dir)
    if p.is_dir():
        alns = sorted(p.glob("*.aln"))
        if len(alns) != 1:
            raise FormatError(
                f"{p}: {len(alns)} .aln files; give the prefix (e.g. {p}/Position_1) "
                "or use read_aretomo3_project for a whole folder"
            )
        return p, alns[0].stem
    if p.suffix == ".aln":
        return p.parent, p.stem
    return p.parent, p.name


def _problem(msg: str, strict: bool) -> None:
    if strict:
        raise FormatError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _kept_raw_indices(
    aln: AlnFile, raw_tilts: Sequence[float] | None, where: Path
) -> list[int] | None:
    """Indices into the raw tilt-sorted stack of the kept (aligned) images.

    The ``DarkFrame`` indices are the record; when the raw tilts are known they must
    agree with it (raw tilt + alpha offset = aligned tilt). Legacy files whose dark
    indices disagree are paired by tilt angle instead (a monotone walk over both
    tilt-sorted lists).
    """
    dark = {d[0] for d in aln.dark_frames}
    by_dark: list[int] | None = [i for i in range(aln.n_raw) if i not in dark]
    if by_dark is not None and (
        len(by_dark) != aln.n_kept or not all(0 <= d < aln.n_raw for d in dark)
    ):
        by_dark = None
    if raw_tilts is None or len(raw_tilts) != aln.n_raw:
        return by_dark

    def agrees(kept: Sequence[int]) -> bool:
        return all(
            abs(raw_tilts[k] + aln.alpha_offset_deg - t) <= _TILT_TOL_DEG
            for k, t in zip(kept, aln.tilt_angles_deg, strict=True)
        )

    if by_dark is not None and agrees(by_dark):
        return by_dark
    walk: list[int] = []
    j = 0
    for t in aln.tilt_angles_deg:
        target = t - aln.alpha_offset_deg
        while j < len(raw_tilts) and abs(raw_tilts[j] - target) > _TILT_TOL_DEG:
            j += 1
        if j == len(raw_tilts):
            return None
        walk.append(j)
        j += 1
    logger.warning(
        "%s: DarkFrame indices do not match the raw tilts; paired by tilt angle", where
    )
    return walk


def _session(folder: Path) -> dict[str, Any]:
    f = folder / "AreTomo3_Session.json"
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        logger.warning("%s: unreadable session file; ignoring it", f)
        return {}
    params = data.get("parameters", {}) if isinstance(data, dict) else {}
    return params if isinstance(params, dict) else {}


def _imod_dir(folder: Path, prefix: str) -> Path:
    return folder / f"{prefix}_Imod"


def _exclude_list(tilt_com: Path) -> set[int]:
    if not tilt_com.is_file():
        return set()
    for line in tilt_com.read_text().splitlines():
        if line.strip().upper().startswith("EXCLUDELIST"):
            nums: set[int] = set()
            for part in re.split(
                r"[,\s]+", line.split(None, 1)[1] if " " in line else ""
            ):
                if "-" in part:
                    a, b = part.split("-", 1)
                    nums.update(range(int(a), int(b) + 1))
                elif part.isdigit():
                    nums.add(int(part))
            return nums
    return set()


def read_aretomo3(
    prefix_or_dir: str | Path,
    *,
    dose_per_tilt_e_per_a2: float | None = None,
    voltage_kv: float | None = None,
    spherical_aberration_mm: float | None = None,
    amplitude_contrast: float | None = None,
    exclude_views: Sequence[int] = (),
    strict: bool = False,
) -> TiltSeriesMetadata:
    """Read one AreTomo3 tilt series' metadata for matching its ``_Vol.mrc``.

    Parameters
    ----------
    prefix_or_dir
        ``<folder>/<prefix>`` (or the ``.aln`` path, or a folder holding one ``.aln``).
    dose_per_tilt_e_per_a2
        Dose per tilt image, used when ``_TLT.txt`` has no dose column.
    voltage_kv, spherical_aberration_mm, amplitude_contrast
        Optics; default from ``AreTomo3_Session.json`` (``kV``, ``Cs``,
        ``AmpContrast``) when present.
    exclude_views
        1-based sections of the raw tilt-sorted stack to leave out in addition to the
        dark images (as in IMOD's ``EXCLUDELIST``); ``_Imod/tilt.com`` exclusions
        of ``-OutImod 1`` output are added automatically.
    strict
        Raise :class:`FormatError` instead of warning when counts cannot be matched.

    Returns
    -------
    TiltSeriesMetadata
        Aligned tilt angles (alpha offset applied, dark images excluded), defocus
        ((d1+d2)/2 in µm), accumulated pre-exposure dose and optics, tilt-sorted.
        Quantities whose rows cannot be paired with the aligned images are ``None``.

    Raises
    ------
    FormatError
        If the ``.aln`` file is missing or malformed, or (``strict``) counts do not
        match.

    Warns
    -----
    RuntimeWarning
        When ``_CTF.txt``/``_TLT.txt`` rows cannot be paired with the aligned tilts.
    """
    folder, prefix = _resolve_prefix(prefix_or_dir)
    aln_path = folder / f"{prefix}.aln"
    aln = read_aln(aln_path)
    imod = _imod_dir(folder, prefix)
    session = _session(folder)

    tlt_path = folder / f"{prefix}_TLT.txt"
    tlt_rows = _rows(tlt_path, 1) if tlt_path.is_file() else None
    raw_tilts = None if tlt_rows is None else [r[0] for r in tlt_rows]
    if raw_tilts is None:
        st_tlt = imod / f"{prefix}_st.tlt"
        if st_tlt.is_file():
            raw_tilts = [r[0] for r in _rows(st_tlt, 1)]
    kept = _kept_raw_indices(aln, raw_tilts, aln_path)
    if kept is None:
        _problem(
            f"{aln_path}: {aln.n_kept} aligned tilts, {aln.n_raw} raw images and "
            f"{len(aln.dark_frames)} dark frames cannot be matched; raw-stack "
            "quantities (CTF, dose) are left out",
            strict,
        )

    # Views to drop beyond the dark images: user list plus tilt.com EXCLUDELIST
    # (OutImod 1: 1-based sections of the raw stack, dark ones included).
    excluded_raw = {v - 1 for v in exclude_views}
    if (imod / f"{prefix}_order_list.csv").is_file():
        excluded_raw |= {v - 1 for v in _exclude_list(imod / "tilt.com")}
    dark = {d[0] for d in aln.dark_frames}
    extra = sorted(excluded_raw - dark) if kept is not None else []
    keep_pos = [i for i, r in enumerate(kept or []) if r not in set(extra)]
    if kept is None:
        keep_pos = list(range(aln.n_kept))
    elif extra:
        logger.info(
            "%s: excluding views %s (1-based raw sections)",
            aln_path,
            [e + 1 for e in extra],
        )

    def select_raw(values: Sequence[float], what: str, src: Path) -> list[float] | None:
        if kept is not None and len(values) == aln.n_raw:
            return [values[kept[i]] for i in keep_pos]
        if len(values) == aln.n_kept:
            return [values[i] for i in keep_pos]
        _problem(
            f"{src}: {len(values)} {what} rows match neither the {aln.n_raw} raw nor "
            f"the {aln.n_kept} aligned images of {aln_path.name}; {what} left out",
            strict,
        )
        return None

    tilts = [aln.tilt_angles_deg[i] for i in keep_pos]

    # Defocus: _CTF.txt (Å, raw rows), else the IMOD defocus files (nm).
    defocus: list[float] | None = None
    hand = 0
    ctf_path = folder / f"{prefix}_CTF.txt"
    imod_ctf = [imod / f"{prefix}_ctf.txt", folder / f"{prefix}_CTF_Imod.txt"]
    if ctf_path.is_file():
        rows = _rows(ctf_path, 3)
        df = [0.5 * (r[1] + r[2]) / 1e4 for r in rows]
        defocus = select_raw(df, "CTF", ctf_path)
        if rows and len(rows[0]) >= 8:
            # AreTomo3 dfHand -> RELION rlnTomoHand = -dfHand (Phaips/aretomo3torelion5)
            hand = -int(rows[0][7])
    else:
        for f in imod_ctf:
            if f.is_file():
                rows = _rows(f, 5)[1:]  # v3 header line first
                defocus = select_raw(
                    [
                        0.5 * (r[4] + r[5]) / 1e3 if len(r) > 5 else r[4] / 1e3
                        for r in rows
                    ],
                    "CTF",
                    f,
                )
                break
        else:
            logger.warning("%s: no _CTF.txt; no CTF model", folder / prefix)

    # Dose: per-image dose from _TLT.txt, accumulated in acquisition order.
    dose: list[float] | None = None
    if tlt_rows is not None and len(tlt_rows[0]) >= 2:
        acq = [r[1] for r in tlt_rows]
        if len(tlt_rows[0]) >= 3:
            per = [r[2] for r in tlt_rows]
        elif dose_per_tilt_e_per_a2 is not None:
            per = [dose_per_tilt_e_per_a2] * len(tlt_rows)
        else:
            per = []
        if per:
            pre = [
                sum(p for a2, p in zip(acq, per, strict=True) if a2 < a) for a in acq
            ]
            dose = select_raw(pre, "dose", tlt_path)
    if dose is None and dose_per_tilt_e_per_a2 is not None:
        for name in (f"{prefix}_order_list.csv", f"{prefix}_st_order_list.csv"):
            f = imod / name
            if f.is_file():
                rows = _rows(f, 2)
                first = min(int(r[0]) for r in rows)
                by_tilt = sorted(rows, key=lambda r: r[1])
                pre = [dose_per_tilt_e_per_a2 * (int(r[0]) - first) for r in by_tilt]
                dose = select_raw(pre, "dose", f)
                break
    if dose is None:
        logger.warning(
            "%s: no per-tilt dose (no 3-column _TLT.txt and no dose per tilt "
            "given); no dose weighting",
            folder / prefix,
        )

    def optic(value: float | None, key: str) -> float | None:
        if value is not None:
            return value
        v = session.get(key)
        return float(v) if isinstance(v, int | float) else None

    kv = optic(voltage_kv, "kV")
    cs = optic(spherical_aberration_mm, "Cs")
    ac = optic(amplitude_contrast, "AmpContrast")
    if defocus is not None and None in (kv, cs, ac):
        raise FormatError(
            f"{folder / prefix}: defocus found but voltage, Cs or amplitude contrast "
            "unknown (no AreTomo3_Session.json); give voltage_kv, "
            "spherical_aberration_mm and amplitude_contrast"
        )
    pix = session.get("PixSize")
    mc_bin = session.get("McBin", 1.0)
    at_bin = session.get("AtBin", [None])
    ts_px = float(pix) * float(mc_bin) if isinstance(pix, int | float) else None
    binning = (
        float(at_bin[0])
        if isinstance(at_bin, list) and at_bin and isinstance(at_bin[0], int | float)
        else None
    )
    order = sorted(range(len(tilts)), key=lambda i: tilts[i])
    return TiltSeriesMetadata(
        tilt_angles_deg=tuple(tilts[i] for i in order),
        defocus_um=None if defocus is None else tuple(defocus[i] for i in order),
        dose_e_per_a2=None if dose is None else tuple(dose[i] for i in order),
        voltage_kv=kv,
        spherical_aberration_mm=cs,
        amplitude_contrast=ac,
        defocus_handedness=hand if defocus is not None else 0,
        tilt_series_pixel_size_a=ts_px,
        binning=binning,
        tomo_name=prefix,
    )


def _mrc_info(path: Path) -> tuple[tuple[int, int, int], float] | None:
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            h = mrc.header
            shape = (int(h.nz), int(h.ny), int(h.nx))
            vox = float(mrc.voxel_size.x)
    except (OSError, ValueError):
        return None
    return shape, vox


def read_aretomo3_project(
    aretomo_dir: str | Path,
    *,
    include: Sequence[str] = (),
    voxel_size_a: float | None = None,
    include_halves: bool = False,
) -> list[TomogramEntry]:
    """List the tilt series of an AreTomo3 output folder with their ``_Vol.mrc``.

    Parameters
    ----------
    aretomo_dir
        AreTomo3 output folder (``-OutDir``).
    include
        Shell-style patterns of prefixes to keep (all when empty).
    voxel_size_a
        Tomogram voxel size in Å; default from the MRC header, else
        ``PixSize x McBin x AtBin[0]`` of ``AreTomo3_Session.json``.
    include_halves
        Also list ``_EVN_Vol.mrc``/``_ODD_Vol.mrc`` as ``half1``/``half2`` entries.

    Returns
    -------
    list of TomogramEntry
        One per ``.aln`` prefix (sorted); entries without a ``_Vol.mrc``, with an
        x-z-y volume (``-FlipVol 0``) or without a voxel size carry ``problems``.

    Raises
    ------
    FormatError
        If the folder does not exist or holds no ``.aln`` file.
    """
    import fnmatch

    folder = Path(aretomo_dir)
    if not folder.is_dir():
        raise FormatError(f"{folder}: AreTomo3 folder not found; check aretomo_dir")
    prefixes = sorted(p.stem for p in folder.glob("*.aln"))
    if include:
        prefixes = [
            p for p in prefixes if any(fnmatch.fnmatchcase(p, g) for g in include)
        ]
    if not prefixes:
        raise FormatError(
            f"{folder}: no .aln files"
            f"{' matching ' + ', '.join(include) if include else ''}"
            "; give the AreTomo3 output folder (-OutDir)"
        )
    session = _session(folder)
    sess_vox = None
    if isinstance(session.get("PixSize"), int | float):
        at_bin = session.get("AtBin", [1])
        sess_vox = (
            float(session["PixSize"])
            * float(session.get("McBin", 1.0))
            * float(at_bin[0] if isinstance(at_bin, list) and at_bin else 1.0)
        )
    entries: list[TomogramEntry] = []
    for prefix in prefixes:
        halves: list[tuple[str | None, str]] = [(None, "_Vol.mrc")]
        if include_halves:
            halves += [("half1", "_EVN_Vol.mrc"), ("half2", "_ODD_Vol.mrc")]
        for half, suffix in halves:
            problems: list[str] = []
            vol = folder / f"{prefix}{suffix}"
            vox = voxel_size_a
            if not vol.is_file():
                if half is not None:
                    continue
                problems.append(f"{prefix}: no reconstruction {vol.name}")
                tomo: Path | None = None
            else:
                tomo = vol
                info = _mrc_info(vol)
                if info is None:
                    problems.append(f"{prefix}: {vol.name} is not a readable MRC file")
                else:
                    (nz, ny, _nx), hdr_vox = info
                    if nz > ny:
                        problems.append(
                            f"{prefix}: {vol.name} has nz={nz} > ny={ny}, i.e. it is "
                            "stored x-z-y (AreTomo3 -FlipVol 0); rerun AreTomo3 with "
                            "-FlipVol 1 or rotate it (IMOD 'trimvol -rx')"
                        )
                    if vox is None and hdr_vox > 0 and abs(hdr_vox - 1.0) > 1e-6:
                        vox = hdr_vox
            if vox is None:
                vox = sess_vox
            if vox is None:
                problems.append(f"{prefix}: voxel size unknown; give voxel_size_a")
            entries.append(
                TomogramEntry(
                    tomo_name=prefix,
                    tomogram=tomo,
                    metadata_source=folder / f"{prefix}.aln",
                    voxel_size_a=vox,
                    half=half,
                    problems=tuple(problems),
                )
            )
    # Volumes without an .aln: tomograms without metadata.
    for vol in sorted(folder.glob("*_Vol.mrc")):
        prefix = vol.name[: -len("_Vol.mrc")]
        if prefix.endswith(("_EVN", "_ODD", "_2ND")) or prefix in prefixes:
            continue
        if include and not any(fnmatch.fnmatchcase(prefix, g) for g in include):
            continue
        entries.append(
            TomogramEntry(
                tomo_name=prefix,
                tomogram=vol,
                problems=(
                    f"{vol}: tomogram without {prefix}.aln (no metadata); remove it "
                    "or restrict the batch with include=[...]",
                ),
            )
        )
    return entries
