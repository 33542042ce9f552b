"""Plan, submit, follow, resume and finish a batch of tomograms on SLURM.

``plan_relion5`` / ``plan_aretomo3`` read a project, check every tomogram (listing all
problems at once), and write ``manifest.json`` plus ``submit_array.sh`` into the batch
folder. Each array task runs :func:`run_task` for one entry: template matching (the
engine resumes from its checkpoint when rerun with the same options) and candidate
extraction. :func:`batch_status` combines the task state files, the outputs on disk
and ``squeue``; :func:`resume` resubmits only the unfinished entries;
:func:`finish` extracts every matched tomogram again (with the final options) and
merges the particles into one STAR file.

Batch folder layout::

    manifest.json  submit_array.sh  submissions.json  logs/  particles.star
    tomograms/<key>/{tomo_id}_scores.mrc, _angles.mrc, _job.json, _particles.star,
                    _particles.mod, task.json
    metadata/<key>.tlt, <key>_defocus.txt, <key>_dose.txt   (--write-metadata)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import signal
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tmfast._fileio import atomic_path, check_writable, make_folder
from tmfast.batch.manifest import Manifest, ManifestEntry, TomogramEntry
from tmfast.batch.slurm import (
    SlurmOptions,
    format_array_indices,
    queue_states,
    render_array_script,
    script_jobs,
    submit_script,
)
from tmfast.errors import ConfigError, FormatError, TmfastError
from tmfast.metadata import TiltSeriesMetadata

__all__ = [
    "EXTRACT_DEFAULTS",
    "BatchPlan",
    "EntryStatus",
    "batch_status",
    "build_match_config",
    "finish",
    "plan_aretomo3",
    "plan_batch",
    "plan_relion5",
    "resume",
    "run_task",
    "submit",
    "write_metadata_files",
]

logger = logging.getLogger(__name__)

SCRIPT_NAME = "submit_array.sh"
SUBMISSIONS_NAME = "submissions.json"
TASK_STATE_NAME = "task.json"
#: Marker in an entry folder whose maps were made with other matching options (a
#: plan --overwrite changed them): the entry is matched again.
STALE_NAME = "stale.json"

#: Extraction options and their defaults (``tmfast extract`` names).
EXTRACT_DEFAULTS: dict[str, Any] = {
    "n_particles": 1000,
    "particle_diameter_a": None,
    "cutoff": None,
    "n_false_positives": 1.0,
    "tophat_filter": False,
    "write_imod": True,
}


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """A planned batch: the manifest, the rendered script and where they go."""

    manifest: Manifest
    script: str
    manifest_path: Path
    script_path: Path
    skipped: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class EntryStatus:
    """State of one manifest entry.

    ``state`` is one of ``done``, ``running``, ``pending`` (queued),
    ``failed`` (ran and stopped without finishing), ``not-submitted``.
    """

    index: int
    key: str
    state: str
    detail: str = ""


# --------------------------------------------------------------------------------
# metadata files for other tools


def write_metadata_files(
    metadata: TiltSeriesMetadata,
    folder: str | Path,
    stem: str,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``stem.tlt``, ``stem_defocus.txt`` and ``stem_dose.txt`` atomically.

    One value per line in tilt order: tilt angle (degrees), defocus (µm) and
    accumulated dose (e⁻/Å²), the inputs of ``pytom_match_template.py`` and
    ``tmfast match``. Files for absent quantities are not written.

    Parameters
    ----------
    metadata
        Tilt-series metadata.
    folder
        Output folder (created).
    stem
        File name stem.
    overwrite
        Replace existing files.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    OutputExistsError
        If a file exists and ``overwrite`` is false.
    """
    out: list[Path] = []
    d = Path(folder)
    items: list[tuple[str, Sequence[float] | None]] = [
        (f"{stem}.tlt", metadata.tilt_angles_deg),
        (f"{stem}_defocus.txt", metadata.defocus_um),
        (f"{stem}_dose.txt", metadata.dose_e_per_a2),
    ]
    for name, values in items:
        if values is None:
            continue
        with atomic_path(d / name, overwrite=overwrite) as tmp:
            tmp.write_text("".join(f"{v!r}\n" for v in values))
        out.append(d / name)
    return out


# --------------------------------------------------------------------------------
# planning


def _match_options(match: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in match.items() if v is not None}
    # The project gives per-tilt CTF and dose: use them unless told otherwise
    # (pytom-match-pick does the same with RELION5 metadata).
    out.setdefault("per_tilt_weighting", True)
    for key in ("template", "mask"):
        if key not in out:
            raise ConfigError(f"match['{key}'] is required")
        out[key] = str(Path(out[key]).resolve())
    search = _angle_file(out.get("angular_search"))
    if search is not None:
        # The tasks run in sbatch's folder (or a container): a path relative to
        # where plan ran would not be found there, after the queue wait.
        out["angular_search"] = str(search.resolve())
    return out


def _angle_file(angular_search: Any) -> Path | None:
    """The angle file named by ``angular_search``; None for a step in degrees."""
    if angular_search is None or isinstance(angular_search, (int, float)):
        return None
    try:
        float(str(angular_search))
    except ValueError:
        return Path(str(angular_search))
    return None


def build_match_config(
    manifest: Manifest, entry: ManifestEntry, *, write_files: bool = True
) -> Any:
    """Return the :class:`tmfast.matching.config.MatchConfig` of one entry.

    The shared matching options of the manifest are combined with the entry's
    tomogram, voxel size, output folder and metadata. The metadata go to the engine
    as the :class:`~tmfast.metadata.TiltSeriesMetadata` object itself
    (``MatchConfig.metadata``), so everything the importer read (defocus
    handedness included) reaches matching; CTF constants set in the manifest's
    matching options replace the imported ones. ``write_files`` is kept for
    callers and ignored: no metadata file is written (``--write-metadata`` writes
    them for the user, see :func:`write_metadata_files`).

    Raises
    ------
    ConfigError
        If the options are invalid for this entry.
    """
    import dataclasses

    from tmfast.matching.config import MatchConfig

    del write_files
    opts = dict(manifest.match)
    opts.update(tomogram=entry.tomogram, destination=entry.output_dir)
    if entry.voxel_size_a is not None:
        opts["voxel_size_a"] = entry.voxel_size_a
    if entry.tomogram_mask is not None:
        opts["tomogram_mask"] = entry.tomogram_mask
    md = entry.metadata
    if md is not None:
        given = {
            k: opts[k]
            for k in (
                "voltage_kv",
                "spherical_aberration_mm",
                "amplitude_contrast",
                "phase_shift_deg",
            )
            if opts.get(k) is not None
        }
        if not given.get("phase_shift_deg"):
            given.pop("phase_shift_deg", None)  # 0 is the default, not a choice
        if given:
            md = dataclasses.replace(md, **given)
        opts["metadata"] = md
    return MatchConfig.from_mapping(
        opts, source=f"manifest entry {entry.index} ({entry.key})"
    )


def _bind_paths(manifest: Manifest) -> list[Path]:
    paths = {Path(manifest.output_dir).resolve()}
    for key in ("template", "mask"):
        if manifest.match.get(key):
            paths.add(Path(manifest.match[key]).resolve().parent)
    angle_file = _angle_file(manifest.match.get("angular_search"))
    if angle_file is not None:
        paths.add(angle_file.resolve().parent)
    for e in manifest.entries:
        paths.add(Path(e.tomogram).resolve().parent)
        if e.tomogram_mask:
            paths.add(Path(e.tomogram_mask).resolve().parent)
    return sorted(paths)


def _find_mask(mask_dir: Path, entry: TomogramEntry) -> Path | None:
    from tmfast.batch.relion5 import normalise_tomogram_stem

    keys = {entry.tomo_name, entry.tomo_id}
    if entry.tomogram is not None:
        keys.add(normalise_tomogram_stem(entry.tomogram.name)[0])

    def mask_key(p: Path) -> str:
        # '<tomogram stem>_slab_mask.mrc' is what 'tmfast slab-mask' writes by
        # default; strip the mask suffix before the tomogram-name rules so that
        # rec_TS_01_slab_mask.mrc, TS_01_10.00Apx_mask.mrc and Pos_1_Vol_mask.mrc
        # all name their tomogram.
        stem = p.stem
        for suffix in ("_slab_mask", "_mask"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        return normalise_tomogram_stem(stem + p.suffix)[0]

    found = [
        p
        for p in sorted(mask_dir.iterdir())
        if p.is_file()
        and p.suffix.lower() in (".mrc", ".rec", ".map")
        and mask_key(p) in keys
    ]
    return found[0] if len(found) == 1 else None


#: Relative voxel-size tolerance of the plan's checks (the engine compares voxel
#: sizes rounded to 0.001 Å; 0.1 % is as strict for any voxel above 1 Å).
VOXEL_SIZE_RTOL = 1e-3


def _same_voxel(a: float, b: float) -> bool:
    return abs(a - b) <= max(VOXEL_SIZE_RTOL * max(a, b), 5e-4)


def _header(path: str | Path) -> tuple[tuple[int, int, int], float | None]:
    from tmfast.io.mrc import read_header

    return read_header(path)


def _volume_problems(
    te: TomogramEntry,
    template: tuple[Path, tuple[int, int, int], float | None],
    mask: tuple[Path, tuple[int, int, int], float | None],
) -> list[str]:
    """Return what makes one tomogram unusable with this template and mask.

    Checks the tomogram header (readable, voxel size and, for RELION5, shape
    against ``rlnTomoSize`` / binning, allowing one voxel of rounding), the
    template and mask header voxel sizes against the entry's voxel size, and the
    template box against the tomogram. The engine trusts the project's voxel size
    over the headers, so a template made for another voxel size would otherwise be
    searched at the wrong scale without any error.
    """
    out: list[str] = []
    vox = te.voxel_size_a
    tid = te.tomo_id
    assert te.tomogram is not None
    try:
        shape_zyx, tomo_vox = _header(te.tomogram)
    except FormatError as exc:
        return [f"{tid}: {exc}"]
    if vox is not None:
        for what, (path, _, hv) in (("template", template), ("mask", mask)):
            if hv is None:
                logger.warning(
                    "%s: no voxel size in the header; assuming the tomograms' %.3f Å",
                    path,
                    vox,
                )
            elif not _same_voxel(hv, vox):
                out.append(
                    f"{tid}: {what} {path.name} has voxel size {hv:.3f} Å (header) "
                    f"but the tomogram's is {vox:.3f} Å; make the {what} at "
                    f"{vox:.3f} Å (tmfast create-template/create-mask "
                    f"--output-voxel-size-angstrom {vox:.3f}) or fix its header"
                )
        if tomo_vox == 1.0 and not _same_voxel(1.0, vox):
            # 1 Å is what many writers leave when they set no voxel size.
            logger.warning(
                "%s: header voxel size 1 Å (probably unset); using the project's "
                "%.3f Å",
                te.tomogram,
                vox,
            )
        elif tomo_vox is not None and not _same_voxel(tomo_vox, vox):
            out.append(
                f"{tid}: {te.tomogram.name} header voxel size {tomo_vox:.3f} Å "
                f"differs from the project's {vox:.3f} Å (pixel size x binning); "
                "the tomogram does not belong to this project entry (check "
                "tomogram_dir) or its header is wrong"
            )
    if te.size_xyz is not None and te.binning:
        nz, ny, nx = shape_zyx
        expected = [v / te.binning for v in te.size_xyz]
        if any(abs(n - e) >= 2.0 for n, e in zip((nx, ny, nz), expected, strict=True)):
            out.append(
                f"{tid}: {te.tomogram.name} is {nx}x{ny}x{nz} (x, y, z) but "
                f"tomograms.star says {te.size_xyz[0]}x{te.size_xyz[1]}x"
                f"{te.size_xyz[2]} at binning {te.binning:g}, i.e. about "
                + "x".join(f"{e:.0f}" for e in expected)
                + "; the tomogram does not belong to this project entry (check "
                "tomogram_dir)"
            )
    box = max(template[1])
    if any(box > n for n in shape_zyx):
        out.append(
            f"{tid}: template box {box} is larger than the tomogram "
            f"{shape_zyx[::-1]} (x, y, z); bin the template or use a smaller box"
        )
    return out


def plan_batch(
    entries: Sequence[TomogramEntry],
    *,
    source: str,
    source_path: str | Path,
    output_dir: str | Path,
    match: dict[str, Any],
    read_metadata: Callable[[TomogramEntry], TiltSeriesMetadata],
    extract: dict[str, Any] | None = None,
    slurm: SlurmOptions | None = None,
    tomogram_mask_dir: str | Path | None = None,
    skip_bad: bool = False,
    write_metadata: bool = False,
    dry_run: bool = False,
    overwrite: bool = False,
) -> BatchPlan:
    """Check every tomogram, then write the manifest and the array script.

    Parameters
    ----------
    entries
        Tomograms from :func:`read_relion5_project` / :func:`read_aretomo3_project`.
    source, source_path
        ``"relion5"``/``"aretomo3"`` and the project file or folder (recorded).
    output_dir
        Batch folder.
    match
        Matching options (``MatchConfig`` field names; ``template`` and ``mask``
        required; ``per_tilt_weighting`` defaults to true).
    read_metadata
        Reads one entry's :class:`TiltSeriesMetadata`.
    extract
        Extraction options (:data:`EXTRACT_DEFAULTS` names).
    slurm
        SLURM options of the array script.
    tomogram_mask_dir
        Folder of per-tomogram masks, matched by name (``<name>.mrc``,
        ``<name>_mask.mrc``, ``rec_<name>.mrc``).
    skip_bad
        Leave unusable tomograms out (logged) instead of failing.
    write_metadata
        Also write ``metadata/<key>.tlt``, ``_defocus.txt``, ``_dose.txt``.
    dry_run
        Write nothing; return the plan only.
    overwrite
        Replace an existing manifest and script.

    Returns
    -------
    BatchPlan
        Manifest, script and their paths.

    Raises
    ------
    ConfigError
        Listing every problem found (one per line) when any tomogram cannot be used
        and ``skip_bad`` is false, or when no usable tomogram is left.
    """
    out = Path(output_dir).resolve()
    slurm = slurm or SlurmOptions()
    ext = dict(EXTRACT_DEFAULTS)
    if extract:
        unknown = set(extract) - set(EXTRACT_DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown extraction options {sorted(unknown)}")
        ext.update({k: v for k, v in extract.items() if v is not None})
    if ext.get("particle_diameter_a") is None and match.get("particle_diameter_a"):
        ext["particle_diameter_a"] = match["particle_diameter_a"]
    if int(ext["n_particles"]) < 1:
        raise ConfigError(f"extract['n_particles'] {ext['n_particles']} must be >= 1")
    global_problems: list[str] = []
    for key in ("template", "mask"):
        v = match.get(key)
        if not v:
            global_problems.append(f"match['{key}'] is required")
        elif not Path(v).is_file():
            global_problems.append(f"match['{key}'] {v}: file not found")
    if slurm.container and not Path(slurm.container).is_file():
        # every task would fail in 'apptainer exec', after the queue wait
        global_problems.append(
            f"slurm.container {slurm.container}: image not found; give the path of the "
            "Apptainer .sif file"
        )
    angle_file = _angle_file(match.get("angular_search"))
    if angle_file is not None and not angle_file.is_file():
        global_problems.append(
            f"match['angular_search'] {angle_file}: neither a step in degrees nor an "
            "existing angle file (tmfast angles -o FILE writes one)"
        )
    mask_dir = None if tomogram_mask_dir is None else Path(tomogram_mask_dir)
    if mask_dir is not None and not mask_dir.is_dir():
        global_problems.append(f"tomogram_mask_dir {mask_dir}: folder not found")
        mask_dir = None
    if global_problems:
        raise ConfigError("; ".join(global_problems))
    mopts = _match_options(match)
    volumes = {}
    for key in ("template", "mask"):
        path = Path(mopts[key])
        shape, hv = _header(path)  # FormatError names the file
        volumes[key] = (path, shape, hv)
    if volumes["mask"][1] != volumes["template"][1]:
        # Matching refuses this in every task, after the queue wait: say it now.
        raise ConfigError(
            f"match['mask'] {volumes['mask'][0]}: box {volumes['mask'][1][::-1]} "
            "(x, y, z) "
            f"differs from the template's {volumes['template'][1][::-1]}; make the "
            "mask with the template's box (tmfast create-mask --template "
            f"{volumes['template'][0].name} ...)"
        )

    problems: list[str] = []
    planned: list[ManifestEntry] = []
    keys_seen: set[str] = set()
    for te in entries:
        eprob = list(te.problems)
        md: TiltSeriesMetadata | None = None
        if not eprob:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                try:
                    md = read_metadata(te)
                except (TmfastError, RuntimeWarning) as exc:
                    eprob.append(f"{te.tomo_id}: {exc}")
        tmask = None
        if mask_dir is not None and not eprob:
            found = _find_mask(mask_dir, te)
            if found is None:
                eprob.append(
                    f"{te.tomo_id}: no mask in {mask_dir} (expected {te.tomo_name}.mrc)"
                )
            tmask = None if found is None else str(found.resolve())
        if not eprob and te.tomogram is not None:
            eprob.extend(_volume_problems(te, volumes["template"], volumes["mask"]))
        if not eprob and te.tomogram is not None and tmask is not None:
            # Matching refuses a mask of another shape, in the task: check it now.
            try:
                mask_zyx, tomo_zyx = _header(tmask)[0], _header(te.tomogram)[0]
            except FormatError as exc:
                eprob.append(f"{te.tomo_id}: {exc}")
            else:
                if mask_zyx != tomo_zyx:
                    eprob.append(
                        f"{te.tomo_id}: tomogram mask {Path(tmask).name} is "
                        f"{'x'.join(map(str, mask_zyx[::-1]))} (x, y, z) but "
                        f"{te.tomogram.name} is {'x'.join(map(str, tomo_zyx[::-1]))}; "
                        "give the mask made from this tomogram"
                    )
        if te.tomo_id in keys_seen:
            eprob.append(f"{te.tomo_id}: listed twice")
        keys_seen.add(te.tomo_id)
        if eprob:
            problems.extend(eprob)
            continue
        assert te.tomogram is not None
        entry = ManifestEntry(
            index=len(planned),
            key=te.tomo_id,
            tomo_name=te.tomo_name,
            tomogram=str(te.tomogram.resolve()),
            output_dir=str(out / "tomograms" / te.tomo_id),
            voxel_size_a=te.voxel_size_a,
            metadata=md,
            size_xyz=te.size_xyz,
            metadata_source=None
            if te.metadata_source is None
            else str(te.metadata_source),
            tomogram_mask=tmask,
        )
        planned.append(entry)
    if problems and not skip_bad:
        raise ConfigError(
            f"{len(problems)} problem(s) found, nothing written (fix them or pass "
            "skip_bad=True to leave those tomograms out):\n  " + "\n  ".join(problems)
        )
    for p in problems:
        logger.warning("skipping %s", p)
    if not planned:
        raise ConfigError(f"no usable tomogram in {source_path}")

    from tmfast import __version__

    manifest = Manifest(
        source=source,
        source_path=str(Path(source_path).resolve()),
        output_dir=str(out),
        match=mopts,
        extract=ext,
        slurm=slurm.to_dict(),
        entries=tuple(planned),
        tmfast_version=__version__,
    )
    # Validate the matching options for every entry before writing anything.
    try:
        import tmfast.matching.config  # noqa: F401
    except ImportError:  # pragma: no cover - engine not installed
        logger.warning("tmfast.matching.config missing; matching options not checked")
    else:
        bad: list[str] = []
        for e in planned:
            try:
                build_match_config(manifest, e, write_files=False)
            except ConfigError as exc:
                bad.append(str(exc))
        if bad:
            raise ConfigError("invalid matching options:\n  " + "\n  ".join(bad))
    manifest_path = out / "manifest.json"
    binds = _bind_paths(manifest)
    if slurm.container:
        # apptainer --bind reads 'src[:dst[:opts]][,src...]': such a folder
        # would be cut into other paths and the task would not see its files
        cut = [str(b) for b in (*binds, *slurm.binds) if set(str(b)) & {":", ","}]
        if cut:
            raise ConfigError(
                f"{cut[0]}: apptainer --bind cannot take a folder name with ':' or "
                "','; rename the folder or use a symbolic link without them"
            )
    script = render_array_script(
        manifest_path=manifest_path,
        n_tasks=len(planned),
        log_dir=out / "logs",
        options=slurm,
        bind_paths=binds,
    )
    script_path = out / SCRIPT_NAME
    if not dry_run:
        # Refuse before writing anything: a manifest written next to an old script
        # or old metadata files would be left behind as a partial plan.
        targets = [manifest_path, script_path]
        if write_metadata:
            targets += [
                out / "metadata" / name
                for e in planned
                if e.metadata is not None
                for name, values in (
                    (f"{e.key}.tlt", e.metadata.tilt_angles_deg),
                    (f"{e.key}_defocus.txt", e.metadata.defocus_um),
                    (f"{e.key}_dose.txt", e.metadata.dose_e_per_a2),
                )
                if values is not None
            ]
        for target in targets:
            check_writable(target, overwrite=overwrite)
        _refuse_while_queued(out)
        make_folder(out, "the batch folder")
        previous: Manifest | None = None
        if manifest_path.is_file():
            try:
                previous = Manifest.read(manifest_path)
            except FormatError:
                previous = None
        stale: dict[str, str] = {}
        kept: list[str] = []
        for e in planned:
            if not (_outputs(e)["job"].is_file() or _task_state(e)):
                continue
            reason = _changed_match_inputs(previous, manifest, e)
            if reason is None:
                kept.append(e.key)
            else:
                stale[e.key] = reason
        if kept:
            logger.warning(
                "%s already holds results of %d tomograms (%s...) planned with the "
                "same matching options; they count as done if complete",
                out,
                len(kept),
                kept[0],
            )
        if stale:
            first = next(iter(stale.items()))
            logger.warning(
                "%s: the maps of %d tomograms (%s: %s) were made with other matching "
                "inputs; 'tmfast batch resume' (or submit) matches them again",
                out,
                len(stale),
                *first,
            )
        manifest.write(manifest_path, overwrite=overwrite)
        with atomic_path(script_path, overwrite=overwrite) as tmp:
            tmp.write_text(script)
            tmp.chmod(0o755)
        (out / "logs").mkdir(parents=True, exist_ok=True)
        for e in planned:
            Path(e.output_dir).mkdir(parents=True, exist_ok=True)
            if e.key in stale:
                with atomic_path(Path(e.output_dir) / STALE_NAME, overwrite=True) as t:
                    t.write_text(json.dumps({"reason": stale[e.key]}) + "\n")
            if write_metadata and e.metadata is not None:
                write_metadata_files(
                    e.metadata, out / "metadata", e.key, overwrite=overwrite
                )
        logger.info(
            "planned %d tomograms: %s and %s", len(planned), manifest_path, script_path
        )
    return BatchPlan(
        manifest=manifest,
        script=script,
        manifest_path=manifest_path,
        script_path=script_path,
        skipped=tuple(problems),
    )


def plan_relion5(
    tomograms_star: str | Path,
    output_dir: str | Path,
    *,
    match: dict[str, Any],
    project_dir: str | Path | None = None,
    tomogram_dir: str | Path | None = None,
    tomo_names: Sequence[str] = (),
    include_halves: bool = False,
    use_denoised: bool = False,
    voxel_size_a: float | None = None,
    **kwargs: Any,
) -> BatchPlan:
    """Plan a batch over a RELION5 project (see :func:`plan_batch` for ``kwargs``).

    Raises
    ------
    FormatError
        If tomograms.star is missing or not RELION5.
    ConfigError
        Listing every problem found.
    """
    from tmfast.batch.relion5 import read_relion5_metadata, read_relion5_project

    entries = read_relion5_project(
        tomograms_star,
        project_dir=project_dir,
        tomogram_dir=tomogram_dir,
        include_halves=include_halves,
        use_denoised=use_denoised,
        voxel_size_a=voxel_size_a,
    )
    if tomo_names:
        known = {e.tomo_name for e in entries}
        missing = [n for n in tomo_names if n not in known]
        if missing:
            raise ConfigError(
                f"tomo_names {', '.join(missing)}: not in {tomograms_star}"
            )
        entries = [e for e in entries if e.tomo_name in set(tomo_names)]

    def reader(te: TomogramEntry) -> TiltSeriesMetadata:
        return read_relion5_metadata(
            tomograms_star, te.tomo_name, project_dir=project_dir
        )

    return plan_batch(
        entries,
        source="relion5",
        source_path=tomograms_star,
        output_dir=output_dir,
        match=match,
        read_metadata=reader,
        **kwargs,
    )


def plan_aretomo3(
    aretomo_dir: str | Path,
    output_dir: str | Path,
    *,
    match: dict[str, Any],
    include: Sequence[str] = (),
    include_halves: bool = False,
    voxel_size_a: float | None = None,
    dose_per_tilt_e_per_a2: float | None = None,
    voltage_kv: float | None = None,
    spherical_aberration_mm: float | None = None,
    amplitude_contrast: float | None = None,
    **kwargs: Any,
) -> BatchPlan:
    """Plan a batch over an AreTomo3 output folder (see :func:`plan_batch`).

    Raises
    ------
    FormatError
        If the folder is missing or has no ``.aln`` files.
    ConfigError
        Listing every problem found (counts that cannot be matched included).
    """
    from tmfast.batch.aretomo3 import read_aretomo3, read_aretomo3_project

    entries = read_aretomo3_project(
        aretomo_dir,
        include=include,
        voxel_size_a=voxel_size_a,
        include_halves=include_halves,
    )

    def reader(te: TomogramEntry) -> TiltSeriesMetadata:
        return read_aretomo3(
            Path(aretomo_dir) / te.tomo_name,
            dose_per_tilt_e_per_a2=dose_per_tilt_e_per_a2,
            voltage_kv=voltage_kv,
            spherical_aberration_mm=spherical_aberration_mm,
            amplitude_contrast=amplitude_contrast,
            strict=True,
        )

    return plan_batch(
        entries,
        source="aretomo3",
        source_path=aretomo_dir,
        output_dir=output_dir,
        match=match,
        read_metadata=reader,
        **kwargs,
    )


# --------------------------------------------------------------------------------
# submission and status


def _submissions(out: Path) -> list[dict[str, Any]]:
    f = out / SUBMISSIONS_NAME
    if not f.is_file():
        return []
    try:
        data = json.loads(f.read_text())
    except ValueError:
        raise FormatError(f"{f}: unreadable submission record; delete it") from None
    return list(data) if isinstance(data, list) else []


def _record_submission(out: Path, job_id: int, indices: Sequence[int]) -> None:
    subs = _submissions(out)
    subs.append(
        {
            "job_id": job_id,
            "indices": sorted(indices),
            "submitted": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
        }
    )
    with atomic_path(out / SUBMISSIONS_NAME, overwrite=True) as tmp:
        tmp.write_text(json.dumps(subs, indent=2) + "\n")


def submit(manifest_path: str | Path, *, indices: Sequence[int] | None = None) -> int:
    """Submit the batch's array script (all entries, or ``indices``) with sbatch.

    Returns
    -------
    int
        The SLURM job id (also recorded in ``submissions.json``).

    Raises
    ------
    FormatError
        If the manifest or script is missing.
    ConfigError
        If the whole batch was submitted before (use :func:`resume`).
    SlurmError
        If sbatch is missing or rejects the job.
    """
    manifest = Manifest.read(manifest_path)
    out = Path(manifest.output_dir)
    script = out / SCRIPT_NAME
    if not script.is_file():
        raise FormatError(f"{script}: array script missing; rerun 'tmfast batch plan'")
    previous = _submissions(out)
    if indices is None and previous:
        raise ConfigError(
            f"{manifest_path}: already submitted as job {previous[-1]['job_id']}; use "
            "'tmfast batch status' to follow it and 'tmfast batch resume' to "
            "resubmit what is not done"
        )
    all_idx = list(range(len(manifest.entries)))
    idx = all_idx if indices is None else sorted(set(indices))
    for i in idx:
        manifest.entry(i)
    throttle = manifest.slurm.get("array_throttle")
    array = None if idx == all_idx else format_array_indices(idx, throttle)
    job_id = submit_script(script, array=array)
    _record_submission(out, job_id, idx)
    logger.info(
        "submitted job %d (array %s)",
        job_id,
        array or format_array_indices(idx, throttle),
    )
    return job_id


def _task_state(entry: ManifestEntry) -> dict[str, Any]:
    f = Path(entry.output_dir) / TASK_STATE_NAME
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _set_task_state(entry: ManifestEntry, state: str, **info: Any) -> None:
    rec = {
        "state": state,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "slurm_job_id": os.environ.get("SLURM_ARRAY_JOB_ID")
        or os.environ.get("SLURM_JOB_ID"),
        **info,
    }
    with atomic_path(Path(entry.output_dir) / TASK_STATE_NAME, overwrite=True) as tmp:
        tmp.write_text(json.dumps(rec, indent=2) + "\n")


def _outputs(entry: ManifestEntry) -> dict[str, Path]:
    d = Path(entry.output_dir)
    t = entry.tomo_id
    return {
        "scores": d / f"{t}_scores.mrc",
        "angles": d / f"{t}_angles.mrc",
        "job": d / f"{t}_job.json",
        "particles": d / f"{t}_particles.star",
        "checkpoint": d / f"{t}_checkpoint.npz",
    }


def _is_done(entry: ManifestEntry) -> bool:
    o = _outputs(entry)
    return (
        _task_state(entry).get("state") == "done"
        and _stale_reason(entry) is None
        and all(o[k].is_file() for k in ("scores", "angles", "job", "particles"))
    )


def _stale_reason(entry: ManifestEntry) -> str | None:
    """Why the entry's maps are out of date (see :data:`STALE_NAME`), or None."""
    f = Path(entry.output_dir) / STALE_NAME
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        data = {}
    reason = data.get("reason") if isinstance(data, dict) else None
    return str(reason or "planned again with other matching options")


#: Entry fields that change the maps (index, output folder and rlnTomoSize do not).
_MATCH_ENTRY_FIELDS = ("tomogram", "voxel_size_a", "metadata", "tomogram_mask")
#: Matching options that do not change the maps (the engine resumes checkpoints
#: across them too): where and how often the work runs and is saved.
_RUN_ONLY_OPTIONS = frozenset(
    {"backend", "gpu_ids", "checkpoint_every", "checkpoint_interval_s"}
)


def _batch_jobs(out: Path, subs: list[dict[str, Any]]) -> dict[int, list[int]]:
    """``{job_id: array indices}`` of the batch's jobs: those ``submit`` recorded
    (``subs``) and those the user's queue runs its script for (given to sbatch by
    hand: nothing here names them while their tasks are pending).

    Where squeue cannot be asked (no SLURM here) only the recorded jobs are
    returned; asking about those raises the same error in ``queue_states``.
    """
    jobs: dict[int, list[int]] = {int(s["job_id"]): s["indices"] for s in subs}
    script = out / SCRIPT_NAME
    if script.is_file():
        from tmfast.batch.slurm import SlurmError

        try:
            for job, indices in script_jobs(script).items():
                jobs.setdefault(job, indices)
        except SlurmError as exc:
            logger.debug("%s: no queue to ask about jobs of its script (%s)", out, exc)
    return jobs


def _refuse_while_queued(out: Path) -> None:
    """Refuse to plan over a batch whose array tasks are still queued or running.

    A task reads the manifest when it starts and takes the entry of its array
    index: a pending task of the earlier plan would match whatever tomogram the
    new plan puts at that index, next to the new submission's task.

    Raises
    ------
    ConfigError
        Naming the jobs to cancel or wait for.
    """
    subs = _submissions(out)
    jobs_in = _batch_jobs(out, subs)
    from tmfast.batch.slurm import SlurmError

    try:
        queued = queue_states(jobs_in)
    except SlurmError as exc:
        logger.warning("%s: cannot check for queued tasks of it (%s)", out, exc)
        return
    if queued:
        jobs = sorted(jobs_in)
        raise ConfigError(
            f"{out}: {len(queued)} array task(s) of this batch are still queued or "
            f"running (jobs {', '.join(map(str, jobs))}); a task reads the manifest "
            "when it starts, so wait for them or cancel them (scancel JOBID), then "
            "plan again"
        )


def _changed_match_inputs(
    old: Manifest | None, new: Manifest, entry: ManifestEntry
) -> str | None:
    """What differs between the plan that made ``entry``'s maps and ``new``.

    ``None`` when the matching inputs of the entry are the same in both plans;
    otherwise a short reason naming the differing options or fields.
    """
    if old is None:
        return "the batch was planned again and its earlier manifest is unreadable"
    prev = next((e for e in old.entries if e.key == entry.key), None)
    if prev is None:
        return "the earlier plan of this batch folder had no such entry"
    # Compare as JSON, the form the manifest stores (tuples become lists).
    new_match = json.loads(json.dumps(new.match))
    keys = sorted(
        k
        for k in set(new_match) | set(old.match)
        if k not in _RUN_ONLY_OPTIONS and new_match.get(k) != old.match.get(k)
    )
    a, b = (
        json.loads(json.dumps(prev.to_dict())),
        json.loads(json.dumps(entry.to_dict())),
    )
    keys += [k for k in _MATCH_ENTRY_FIELDS if a.get(k) != b.get(k)]
    if not keys:
        return None
    return "planned again with other matching inputs (" + ", ".join(keys) + ")"


def batch_status(
    manifest_path: str | Path, *, query_queue: bool = True
) -> list[EntryStatus]:
    """Return the state of every entry of a batch.

    ``done``: the task finished and all its outputs exist. ``running``/``pending``:
    the entry's latest array task is in ``squeue``. ``failed``: it ran (or was
    submitted) and stopped without finishing (error, cancellation, time limit; the
    detail says which and whether a checkpoint exists). ``not-submitted``: never
    submitted.

    Raises
    ------
    FormatError
        If the manifest is missing or malformed.
    SlurmError
        If ``query_queue`` and squeue fails.
    """
    manifest = Manifest.read(manifest_path)
    out = Path(manifest.output_dir)
    subs = _submissions(out)
    task_states = {e.key: _task_state(e) for e in manifest.entries}
    queue: dict[int, str] = {}
    if query_queue:
        jobs = _batch_jobs(out, subs)
        for e in manifest.entries:
            # A task started by a job this folder has no record of (the script
            # given to sbatch by hand) and that squeue no longer lists under the
            # script: without asking about its job it would pass for stopped, and
            # resume would start a second task on the same folder.
            state = task_states[e.key]
            jid = str(state.get("slurm_job_id") or "")
            if state.get("state") == "running" and jid.isdigit():
                jobs.setdefault(int(jid), [e.index])
        # The queue answer is keyed by array index; only the latest job per index
        # matters, and squeue reports the higher job id last.
        queue = queue_states(jobs)
    submitted = {i for s in subs for i in s["indices"]}
    result: list[EntryStatus] = []
    for e in manifest.entries:
        ts = task_states[e.key]
        ckpt = _outputs(e)["checkpoint"]
        qs = queue.get(e.index)
        if _is_done(e):
            result.append(EntryStatus(e.index, e.key, "done"))
        elif qs in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED"):
            result.append(EntryStatus(e.index, e.key, "running", qs.lower()))
        elif qs is not None:
            result.append(EntryStatus(e.index, e.key, "pending", qs.lower()))
        elif (why := _stale_reason(e)) is not None:
            result.append(
                EntryStatus(e.index, e.key, "failed", f"{why}; resume matches it again")
            )
        elif ts or e.index in submitted:
            state = ts.get("state", "never started")
            detail = {
                "running": "stopped while running (cancelled, time limit or node "
                "failure)",
                "failed": f"error: {ts.get('error', '?')}",
                "interrupted": f"interrupted ({ts.get('signal', 'signal')})",
                "done": "outputs missing",
            }.get(state, state)
            if ckpt.is_file():
                detail += "; checkpoint kept, resume continues from it"
            result.append(EntryStatus(e.index, e.key, "failed", detail))
        else:
            result.append(EntryStatus(e.index, e.key, "not-submitted"))
    return result


def resume(manifest_path: str | Path) -> tuple[int, list[int]] | None:
    """Resubmit the entries that are neither done nor queued.

    Returns
    -------
    (job_id, indices) or None
        ``None`` when nothing is left to do.

    Raises
    ------
    SlurmError
        If sbatch is missing or rejects the job.
    """
    todo = [
        s.index
        for s in batch_status(manifest_path)
        if s.state in ("failed", "not-submitted")
    ]
    if not todo:
        logger.info("nothing to resume: every entry is done or queued")
        return None
    return submit(manifest_path, indices=todo), todo


# --------------------------------------------------------------------------------
# the array task


def _recheck_volumes(manifest: Manifest, entry: ManifestEntry) -> None:
    """Repeat the plan's voxel-size and shape checks at task start.

    Files may change after planning, and manifests written before these checks
    existed were never checked (the engine trusts the project's voxel size).

    Raises
    ------
    ConfigError
        Listing every problem, as ``tmfast batch plan`` would.
    """
    md = entry.metadata
    te = TomogramEntry(
        tomo_name=entry.key,
        tomogram=Path(entry.tomogram),
        voxel_size_a=entry.voxel_size_a,
        binning=None if md is None else md.binning,
        size_xyz=entry.size_xyz,
    )
    vols = []
    for key in ("template", "mask"):
        path = Path(manifest.match[key])
        shape, hv = _header(path)
        vols.append((path, shape, hv))
    problems = _volume_problems(te, vols[0], vols[1])
    if problems:
        raise ConfigError("; ".join(problems))


def _gpu_request(slurm: dict[str, Any]) -> str | None:
    """The GPU request of the array script (``--gres gpu:...`` etc.), or None."""
    gres = slurm.get("gres")
    if gres and "gpu" in str(gres):
        return f"--gres {gres}"
    if slurm.get("gpus_per_task"):
        return f"--gpus-per-task {slurm['gpus_per_task']}"
    return None


def _no_gpu_reason() -> str | None:
    """Why no GPU backend can run on this node, or None when one can."""
    from tmfast.backends import registry

    reasons = registry.available_backends()
    if reasons["cuda"] is None:
        return None
    opencl_reason = reasons["opencl"]
    if opencl_reason is None:
        module, _ = registry._probe("opencl")
        if module is not None and registry._opencl_has_gpu(module):
            return None
        opencl_reason = "no GPU device (CPU OpenCL only)"
    return f"cuda: {reasons['cuda']}; opencl: {opencl_reason}"


def _check_gpu_available(
    manifest: Manifest, entry: ManifestEntry, backend: str
) -> None:
    """Fail a task that asked SLURM for GPUs but would silently run on the CPU.

    A node with a broken CUDA would otherwise spend the whole time limit on the
    CPU with backend ``auto``.

    Raises
    ------
    BackendUnavailableError
        If the plan requested GPUs, the backend is ``auto`` and no GPU backend
        works here.
    """
    request = _gpu_request(manifest.slurm)
    if request is None:
        return
    if backend == "cpu":
        logger.warning(
            "%s: the batch requests GPUs (%s) but --backend cpu runs on the CPU",
            entry.key,
            request,
        )
        return
    if backend != "auto":
        return  # cuda/opencl: the backend registry refuses with its reason
    reason = _no_gpu_reason()
    if reason is not None:
        from tmfast.errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"{entry.key}: the batch asked SLURM for GPUs ({request}) but no GPU "
            f"backend works on node {os.uname().nodename} ({reason}); fix the "
            "node's CUDA driver or leave the node out (sbatch --exclude), or plan "
            "with --backend cpu and without GPUs to run on CPUs"
        )


class _Terminated(BaseException):
    """Raised in the task when SLURM sends SIGTERM/SIGINT (cancel, time limit)."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise _Terminated(signal.Signals(signum).name)


def run_task(
    manifest_path: str | Path, index: int, *, progress_interval_s: float = 60.0
) -> ManifestEntry:
    """Match and extract one manifest entry (what each SLURM array task runs).

    Matching resumes from the entry's checkpoint when one exists; extraction writes
    ``{tomo_id}_particles.star`` (and ``.mod``). The entry's ``task.json`` records
    ``running``, then ``done``, ``failed`` (with the error) or ``interrupted``.

    Parameters
    ----------
    manifest_path
        Batch manifest.
    index
        Array index (``$SLURM_ARRAY_TASK_ID``).
    progress_interval_s
        Seconds between progress log lines.

    Returns
    -------
    ManifestEntry
        The entry processed.

    Raises
    ------
    TmfastError
        If the entry's inputs or options are invalid, or matching fails;
        :class:`~tmfast.errors.BackendUnavailableError` when the plan requested
        GPUs (``--gres gpu:...``/``--gpus-per-task``) with backend ``auto`` and no
        GPU backend works on the node (instead of running on the CPU).
    """
    from tmfast._progress import throttled_log_progress
    from tmfast.matching.engine import MatchInterrupted, run_match

    manifest = Manifest.read(manifest_path)
    entry = manifest.entry(index)
    Path(entry.output_dir).mkdir(parents=True, exist_ok=True)
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    _set_task_state(entry, "running", host=os.uname().nodename)
    logger.info("task %d: %s (%s)", index, entry.key, entry.tomogram)
    try:
        config = build_match_config(manifest, entry)
        if _job_finished(entry):
            logger.info(
                "task %d: %s already matched; extracting only", index, entry.key
            )
        else:
            _recheck_volumes(manifest, entry)
            _check_gpu_available(manifest, entry, config.backend)
            progress = throttled_log_progress(
                logger, f"{entry.key} rotations", interval_s=progress_interval_s
            )
            # The entry folder belongs to this task: maps without a finished job
            # file (a task killed while writing, a full disk, maps of options
            # planned over) are replaced, or 'resume' could never finish it.
            run_match(config, progress=progress, overwrite=True)
            (Path(entry.output_dir) / STALE_NAME).unlink(missing_ok=True)
        n, _ = _extract_entry(manifest, entry, overwrite=True)
        logger.info("task %d: %s done, %d particles", index, entry.key, n)
        _set_task_state(entry, "done", n_particles=n)
    except (_Terminated, MatchInterrupted) as exc:
        # SIGTERM/SIGINT arrive through our handler; SIGUSR1 (SLURM's early warning,
        # --signal=B:USR1@T) through the engine, which checkpointed first.
        _set_task_state(entry, "interrupted", signal=str(exc))
        logger.warning("task %d: %s interrupted by %s", index, entry.key, exc)
        raise SystemExit(143) from None
    except BaseException as exc:
        _set_task_state(
            entry,
            "failed",
            error=" ".join(str(exc).split())[:500] or type(exc).__name__,
        )
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return entry


# --------------------------------------------------------------------------------
# extraction and merging


def _particle_columns(
    manifest: Manifest, entry: ManifestEntry, **overrides: Any
) -> tuple[dict[str, Any], Any]:
    from tmfast.extraction.candidates import extract_candidates

    ext = {**manifest.extract, **{k: v for k, v in overrides.items() if v is not None}}
    table = extract_candidates(
        _outputs(entry)["job"],
        n_particles=int(ext["n_particles"]),
        particle_diameter_a=ext.get("particle_diameter_a"),
        cutoff=ext.get("cutoff"),
        n_false_positives=float(ext.get("n_false_positives", 1.0)),
        tomogram_mask=entry.tomogram_mask,
        tophat_filter=bool(ext.get("tophat_filter", False)),
    )
    md = entry.metadata
    if (
        table.tilt_series_pixel_size_a is None
        and md is not None
        and md.tilt_series_pixel_size_a is not None
    ):
        # The job built from text files lacks the RELION pixel size and binning.
        binning = md.binning
        if binning is None and entry.voxel_size_a is not None:
            binning = entry.voxel_size_a / md.tilt_series_pixel_size_a
        table = dataclasses.replace(
            table,
            tilt_series_pixel_size_a=float(md.tilt_series_pixel_size_a),
            binning=binning,
        )
    blocks = table.to_star_blocks(relion5=True, tomo_size_xyz_unbinned=entry.size_xyz)
    cols = dict(blocks["particles"])
    # The project's name, which may differ from the file stem (rec_ and others).
    cols["rlnTomoName"] = [entry.tomo_name] * len(table)
    return cols, table


def _extract_entry(
    manifest: Manifest, entry: ManifestEntry, *, overwrite: bool, **overrides: Any
) -> tuple[int, dict[str, Any]]:
    cols, table = _particle_columns(manifest, entry, **overrides)
    _write_entry(manifest, entry, cols, table, overwrite=overwrite)
    return len(table), cols


def _write_entry(
    manifest: Manifest,
    entry: ManifestEntry,
    cols: dict[str, Any],
    table: Any,
    *,
    overwrite: bool,
) -> None:
    """Write the entry's ``_particles.star`` (and ``.mod``) from its picks."""
    from tmfast.io.star import write_star

    o = _outputs(entry)
    write_star(o["particles"], {"particles": cols}, overwrite=overwrite)
    if manifest.extract.get("write_imod", True):
        from tmfast.io.imod import write_imod_points

        nz, ny, nx = table.tomo_shape_zyx
        write_imod_points(
            o["particles"].with_suffix(".mod"),
            table.positions_xyz.reshape(-1, 3),
            radius_px=table.particle_radius_vox,
            dims_xyz=(nx, ny, nz),
            pixel_size_a=table.voxel_size_a,
            model_name=entry.key,
            overwrite=overwrite,
        )


def _is_half_set(entry: ManifestEntry) -> bool:
    """Whether the entry is a half-set reconstruction (``--include-halves``)."""
    return entry.key in (f"{entry.tomo_name}_half1", f"{entry.tomo_name}_half2")


def finish(
    manifest_path: str | Path,
    *,
    output: str | Path | None = None,
    overwrite: bool = False,
    allow_incomplete: bool = False,
    **extract_overrides: Any,
) -> tuple[Path, dict[str, int]]:
    """Extract every matched tomogram and merge the particles into one STAR file.

    Every tomogram is picked before any file is written, so a failure leaves the
    per-tomogram particle files and the merged file as they were. Half-set entries
    (``--include-halves``) get their own particle files but are left out of the
    merged file: they carry the full reconstruction's ``rlnTomoName``, and RELION
    would import their particles again.

    Parameters
    ----------
    manifest_path
        Batch manifest.
    output
        Merged STAR file (default ``<batch>/particles.star``).
    overwrite
        Replace an existing merged file.
    allow_incomplete
        Merge the matched tomograms even if others are not matched yet.
    **extract_overrides
        Extraction options replacing the manifest's (``n_particles``, ``cutoff``, ...).

    Returns
    -------
    (path, counts)
        The merged STAR file and the number of particles per entry key.

    Raises
    ------
    ConfigError
        If some tomograms are not matched yet (without ``allow_incomplete``).
    """
    from tmfast.io.star import write_star

    manifest = Manifest.read(manifest_path)
    unknown = set(extract_overrides) - set(EXTRACT_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown extraction options {sorted(unknown)}")
    _check_extract_overrides(extract_overrides)
    matched = [e for e in manifest.entries if _job_finished(e)]
    missing = [e.key for e in manifest.entries if e not in matched]
    if missing and not allow_incomplete:
        raise ConfigError(
            f"{len(missing)} tomogram(s) not matched yet ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}); run 'tmfast batch resume' or "
            "pass --allow-incomplete"
        )
    if not any(not _is_half_set(e) for e in matched):
        raise ConfigError(
            f"{manifest_path}: no tomogram is matched yet"
            + (" (only half sets)" if matched else "")
            + "; see 'tmfast batch status'"
        )
    target = (
        Path(output)
        if output is not None
        else Path(manifest.output_dir) / "particles.star"
    )
    # Before extracting: the per-tomogram particle files are rewritten with the
    # final options, and must not be left out of step with an old merged file.
    check_writable(target, overwrite=overwrite)
    make_folder(target.parent, "the output folder")
    # Pick every tomogram before writing any file: an extraction that fails (a
    # broken job file, an option no tomogram allows) leaves the earlier particle
    # files and the merged file as they were, not half of them redone.
    picked = [
        (e, *_particle_columns(manifest, e, **extract_overrides)) for e in matched
    ]
    merged: dict[str, list[Any]] = {}
    counts: dict[str, int] = {}
    halves: list[str] = []
    for e, cols, table in picked:
        _write_entry(manifest, e, cols, table, overwrite=True)
        if _is_half_set(e):
            # Same rlnTomoName as the full reconstruction: merged, every particle
            # would be imported two or three times.
            halves.append(e.key)
            continue
        counts[e.key] = len(table)
        for k, v in cols.items():
            merged.setdefault(k, []).extend(list(v))
    if halves:
        logger.info(
            "half-set entries %s: particles written per tomogram, not merged (they "
            "repeat the full reconstructions' particles)",
            ", ".join(halves),
        )
    write_star(target, {"particles": merged}, overwrite=overwrite)
    logger.info(
        "merged %d particles from %d tomograms into %s",
        sum(counts.values()),
        len(counts),
        target,
    )
    return target, counts


def _check_extract_overrides(overrides: dict[str, Any]) -> None:
    """Refuse bad extraction overrides before any file is read or written.

    Raises
    ------
    ConfigError
        Naming the parameter (the CLI names its flag).
    """
    n = overrides.get("n_particles")
    if n is not None and int(n) < 1:
        raise ConfigError(f"n_particles={n} must be at least 1")
    c = overrides.get("cutoff")
    if c is not None and not math.isfinite(float(c)):
        raise ConfigError(f"cutoff={c} must be a finite score (negative: no cutoff)")
    fp = overrides.get("n_false_positives")
    if fp is not None and not (math.isfinite(float(fp)) and float(fp) > 0):
        raise ConfigError(
            f"n_false_positives={fp} must be > 0 (e.g. 1; < 1 is stricter)"
        )


def _job_finished(entry: ManifestEntry) -> bool:
    if _stale_reason(entry) is not None:
        return False
    o = _outputs(entry)
    if not all(o[k].is_file() for k in ("scores", "angles", "job")):
        return False
    try:
        data = json.loads(o["job"].read_text())
    except (OSError, ValueError):
        return False
    return data.get("stats") is not None
