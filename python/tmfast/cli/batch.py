"""`tmfast batch`: RELION5 / AreTomo3 projects to SLURM job arrays.

``plan`` writes the manifest and the array script (``--dry-run`` prints them),
``submit`` calls sbatch, ``status`` summarises the batch, ``resume`` resubmits what
is not done, ``finish`` extracts and merges the particles, and ``run-task`` is what
each array task runs.
"""

from __future__ import annotations

import json
import logging
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tmfast.cli._flags import cli_flags
from tmfast.errors import ConfigError

logger = logging.getLogger(__name__)

batch_app = typer.Typer(
    name="batch",
    no_args_is_help=True,
    help="Template-match a RELION5 or AreTomo3 project on SLURM (job arrays).",
)

_IO = "Input / Output"
_MATCH = "Matching"
_EXTRACT = "Extraction"
_SLURM = "SLURM"

#: The manifest.json argument of submit, status, resume, finish and run-task.
_ManifestArg = Annotated[
    Path, typer.Argument(help="manifest.json, or the batch folder holding it")
]


class Source(StrEnum):
    """Project type of ``batch plan``."""

    relion5 = "relion5"
    aretomo3 = "aretomo3"


#: The batch library's parameter names in its errors, as ``batch plan`` flags
#: (``tmfast.cli._flags.cli_terms``); also used by ``resume`` and ``run-task``,
#: which re-check the tomograms.
PLAN_FLAGS = {
    "match['template']": "--template",
    "match['mask']": "--mask",
    "match['angular_search']": "--angular-search",
    "extract['n_particles']": "--number-of-particles",
    "slurm.container": "--container",
    "skip_bad=True": "--skip-bad",
    "include=[...]": "--include",
    "tomogram_mask_dir": "--tomogram-mask-dir",
    "tomogram_dir": "--tomogram-dir",
    "tomo_names": "--tomo",
    "aretomo_dir": "--aretomo-dir",
    "voxel_size_a": "--voxel-size",
    "voltage_kv": "--voltage",
    "spherical_aberration_mm": "--spherical-aberration",
    "amplitude_contrast": "--amplitude-contrast",
}


def _gpus_in_gres(gres: str | None) -> int | None:
    if not gres:
        return None
    m = re.match(r"^gpu(?::[\w.-]+)?:(\d+)$", gres)
    return int(m.group(1)) if m else None


@batch_app.command("plan")
def plan_cmd(
    source: Source = typer.Argument(..., help="Project type: relion5 or aretomo3."),
    output_dir: Path = typer.Option(
        ...,
        "-o",
        "--output-dir",
        rich_help_panel=_IO,
        help="Batch folder (manifest, script, outputs).",
    ),
    tomograms_star: Path | None = typer.Option(
        None,
        "--tomograms-star",
        rich_help_panel=_IO,
        help="relion5: tomograms.star of a Tomograms (reconstruct) job.",
    ),
    project_dir: Path | None = typer.Option(
        None,
        "--project-dir",
        rich_help_panel=_IO,
        help="relion5: RELION project folder (default: found from tomograms.star).",
    ),
    tomogram_dir: Path | None = typer.Option(
        None,
        "--tomogram-dir",
        rich_help_panel=_IO,
        help="relion5: folder with the reconstructions, matched by name.",
    ),
    tomo: list[str] = typer.Option(
        [], "--tomo", rich_help_panel=_IO, help="relion5: only these rlnTomoName."
    ),
    use_denoised: bool = typer.Option(
        False,
        "--use-denoised",
        rich_help_panel=_IO,
        help="relion5: search rlnTomoDenoisedTomogram.",
    ),
    aretomo_dir: Path | None = typer.Option(
        None, "--aretomo-dir", rich_help_panel=_IO, help="aretomo3: output folder."
    ),
    include: list[str] = typer.Option(
        [],
        "--include",
        rich_help_panel=_IO,
        help="aretomo3: prefixes to keep (shell patterns, repeatable).",
    ),
    dose_per_tilt: float | None = typer.Option(
        None,
        "--dose-per-tilt",
        rich_help_panel=_IO,
        help="aretomo3: e-/A^2 per tilt when _TLT.txt has no dose column.",
    ),
    include_halves: bool = typer.Option(
        False,
        "--include-halves",
        rich_help_panel=_IO,
        help="Also match half-set reconstructions (as <name>_half1/_half2).",
    ),
    voxel_size: float | None = typer.Option(
        None,
        "--voxel-size",
        rich_help_panel=_IO,
        help="Tomogram voxel size in A (default: relion5: pixel size x binning of "
        "tomograms.star; aretomo3: MRC header, else AreTomo3_Session.json).",
    ),
    voltage: float | None = typer.Option(
        None, "--voltage", rich_help_panel=_IO, help="aretomo3: kV if no session file."
    ),
    spherical_aberration: float | None = typer.Option(
        None,
        "--spherical-aberration",
        rich_help_panel=_IO,
        help="aretomo3: Cs in mm if no session file.",
    ),
    amplitude_contrast: float | None = typer.Option(
        None,
        "--amplitude-contrast",
        rich_help_panel=_IO,
        help="aretomo3: amplitude contrast fraction if no session file.",
    ),
    tomogram_mask_dir: Path | None = typer.Option(
        None,
        "--tomogram-mask-dir",
        rich_help_panel=_IO,
        help="Per-tomogram masks (<name>.mrc or <name>_mask.mrc).",
    ),
    write_metadata: bool = typer.Option(
        False,
        "--write-metadata",
        rich_help_panel=_IO,
        help="Also write metadata/<name>.tlt, _defocus.txt, _dose.txt.",
    ),
    skip_bad: bool = typer.Option(
        False,
        "--skip-bad",
        rich_help_panel=_IO,
        help="Leave out tomograms with problems instead of stopping.",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        rich_help_panel=_IO,
        help="Print the manifest and script; write nothing.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        rich_help_panel=_IO,
        help="Replace an existing manifest and script.",
    ),
    template: Path = typer.Option(..., "-t", "--template", rich_help_panel=_MATCH),
    mask: Path = typer.Option(..., "-m", "--mask", rich_help_panel=_MATCH),
    particle_diameter: float | None = typer.Option(
        None,
        "--particle-diameter",
        rich_help_panel=_MATCH,
        help="Particle diameter in A (Crowther angular step; extraction exclusion).",
    ),
    angular_search: str | None = typer.Option(
        None,
        "--angular-search",
        rich_help_panel=_MATCH,
        help="Angular step in degrees or an angle file.",
    ),
    z_axis_rotational_symmetry: int = typer.Option(
        1, "--z-axis-rotational-symmetry", rich_help_panel=_MATCH
    ),
    non_spherical_mask: bool = typer.Option(
        False, "--non-spherical-mask", rich_help_panel=_MATCH
    ),
    low_pass: float | None = typer.Option(
        None, "--low-pass", rich_help_panel=_MATCH, help="Low-pass resolution in A."
    ),
    high_pass: float | None = typer.Option(
        None, "--high-pass", rich_help_panel=_MATCH, help="High-pass resolution in A."
    ),
    spectral_whitening: bool = typer.Option(
        False, "--spectral-whitening", rich_help_panel=_MATCH
    ),
    per_tilt_weighting: bool = typer.Option(
        True,
        "--per-tilt-weighting/--no-per-tilt-weighting",
        rich_help_panel=_MATCH,
        help="Weight the template per tilt (CTF, dose) from the project metadata.",
    ),
    tomogram_ctf_model: str | None = typer.Option(
        None, "--tomogram-ctf-model", rich_help_panel=_MATCH
    ),
    random_phase_correction: bool = typer.Option(
        False, "-r", "--random-phase-correction", rich_help_panel=_MATCH
    ),
    rng_seed: int | None = typer.Option(None, "--rng-seed", rich_help_panel=_MATCH),
    volume_split: tuple[int, int, int] | None = typer.Option(
        None, "-s", "--volume-split", rich_help_panel=_MATCH
    ),
    backend: str = typer.Option("auto", "--backend", rich_help_panel=_MATCH),
    half_precision: bool = typer.Option(
        False, "--half-precision", rich_help_panel=_MATCH
    ),
    checkpoint_every: int | None = typer.Option(
        None,
        "--checkpoint-every",
        rich_help_panel=_MATCH,
        help="Checkpoint every N rotations (resume after preemption).",
    ),
    number_of_particles: int = typer.Option(
        1000, "-n", "--number-of-particles", rich_help_panel=_EXTRACT
    ),
    cutoff: float | None = typer.Option(
        None,
        "-c",
        "--cutoff",
        rich_help_panel=_EXTRACT,
        help="Manual score cutoff (default: automatic false-alarm cutoff).",
    ),
    number_of_false_positives: float = typer.Option(
        1.0, "--number-of-false-positives", rich_help_panel=_EXTRACT
    ),
    tophat_filter: bool = typer.Option(
        False, "--tophat-filter", rich_help_panel=_EXTRACT
    ),
    imod: bool = typer.Option(
        True,
        "--imod/--no-imod",
        rich_help_panel=_EXTRACT,
        help="Also write an IMOD .mod per tomogram.",
    ),
    job_name: str = typer.Option("tmfast", "--job-name", rich_help_panel=_SLURM),
    partition: str | None = typer.Option(None, "--partition", rich_help_panel=_SLURM),
    qos: str | None = typer.Option(None, "--qos", rich_help_panel=_SLURM),
    account: str | None = typer.Option(None, "--account", rich_help_panel=_SLURM),
    gres: str | None = typer.Option(
        None,
        "--gres",
        rich_help_panel=_SLURM,
        help="e.g. gpu:1 (one task per GPU: SLURM packs tasks onto GPUs).",
    ),
    gpus_per_task: int | None = typer.Option(
        None,
        "--gpus-per-task",
        rich_help_panel=_SLURM,
        help="One task uses this many GPUs (one tomogram split over them).",
    ),
    cpus_per_task: int | None = typer.Option(
        None, "--cpus-per-task", rich_help_panel=_SLURM
    ),
    mem: str | None = typer.Option(
        None, "--mem", rich_help_panel=_SLURM, help="e.g. 32G."
    ),
    time: str | None = typer.Option(
        None, "--time", rich_help_panel=_SLURM, help="e.g. 04:00:00."
    ),
    array_throttle: int | None = typer.Option(
        None,
        "--array-throttle",
        rich_help_panel=_SLURM,
        help="At most this many tasks at once (--array=...%N).",
    ),
    module: list[str] = typer.Option(
        [], "--module", rich_help_panel=_SLURM, help="module load NAME (repeatable)."
    ),
    container: Path | None = typer.Option(
        None,
        "--container",
        rich_help_panel=_SLURM,
        help="Apptainer image: tasks run 'apptainer exec --nv IMAGE tmfast ...'.",
    ),
    bind: list[str] = typer.Option(
        [],
        "--bind",
        rich_help_panel=_SLURM,
        help="Extra container bind paths (repeatable).",
    ),
    sbatch_option: list[str] = typer.Option(
        [],
        "--sbatch-option",
        rich_help_panel=_SLURM,
        help="Extra #SBATCH option, e.g. --constraint=a100 (repeatable).",
    ),
    tmfast_command: str | None = typer.Option(
        None,
        "--tmfast-command",
        rich_help_panel=_SLURM,
        help="How tasks start tmfast (default: this Python, or 'tmfast' with "
        "--module/--container).",
    ),
) -> None:
    """Plan a batch: check every tomogram, write manifest.json and submit_array.sh."""
    import math
    import shlex

    from tmfast.batch.plan import plan_aretomo3, plan_relion5
    from tmfast.batch.slurm import SlurmOptions

    for flag, value, low, strict, unit in (
        ("--voxel-size", voxel_size, 0.0, True, "Å"),
        ("--dose-per-tilt", dose_per_tilt, 0.0, False, "e-/Å^2"),
        ("--voltage", voltage, 0.0, True, "kV"),
        ("--spherical-aberration", spherical_aberration, 0.0, False, "mm"),
        ("--amplitude-contrast", amplitude_contrast, 0.0, False, "(fraction)"),
    ):
        if value is None:
            continue
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise ConfigError(
                f"{flag} {value:g}: must be {'>' if strict else '>='} {low:g} {unit}"
            )
    if amplitude_contrast is not None and amplitude_contrast >= 1.0:
        raise ConfigError(
            f"--amplitude-contrast {amplitude_contrast:g}: a fraction below 1 "
            "(e.g. 0.07 or 0.1)"
        )

    n_gpu = gpus_per_task or _gpus_in_gres(gres)
    match: dict[str, Any] = {
        "template": template,
        "mask": mask,
        "particle_diameter_a": particle_diameter,
        "angular_search": angular_search,
        "z_axis_rotational_symmetry": z_axis_rotational_symmetry,
        "non_spherical_mask": non_spherical_mask,
        "low_pass_a": low_pass,
        "high_pass_a": high_pass,
        "spectral_whitening": spectral_whitening,
        "per_tilt_weighting": per_tilt_weighting,
        "tomogram_ctf_model": tomogram_ctf_model,
        "random_phase_correction": random_phase_correction,
        "rng_seed": rng_seed,
        "volume_split_xyz": None if volume_split is None else list(volume_split),
        "backend": backend,
        "half_precision": half_precision,
        "checkpoint_every": checkpoint_every,
        "gpu_ids": list(range(n_gpu)) if n_gpu and n_gpu > 1 else None,
    }
    extract = {
        "n_particles": number_of_particles,
        "cutoff": cutoff,
        "particle_diameter_a": particle_diameter,
        "n_false_positives": number_of_false_positives,
        "tophat_filter": tophat_filter,
        "write_imod": imod,
    }
    slurm = SlurmOptions(
        job_name=job_name,
        partition=partition,
        qos=qos,
        account=account,
        gres=gres,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        mem=mem,
        time=time,
        array_throttle=array_throttle,
        modules=tuple(module),
        container=None if container is None else str(container.resolve()),
        binds=tuple(bind),
        extra_sbatch=tuple(sbatch_option),
        tmfast_command=tuple(shlex.split(tmfast_command)) if tmfast_command else (),
    )
    common: dict[str, Any] = {
        "match": match,
        "extract": extract,
        "slurm": slurm,
        "include_halves": include_halves,
        "voxel_size_a": voxel_size,
        "tomogram_mask_dir": tomogram_mask_dir,
        "skip_bad": skip_bad,
        "write_metadata": write_metadata,
        "dry_run": dry_run,
        "overwrite": overwrite,
    }
    if source is Source.relion5:
        if tomograms_star is None:
            raise ConfigError("batch plan relion5 needs --tomograms-star FILE")
        with cli_flags(PLAN_FLAGS):
            plan = plan_relion5(
                tomograms_star,
                output_dir,
                project_dir=project_dir,
                tomogram_dir=tomogram_dir,
                tomo_names=tomo,
                use_denoised=use_denoised,
                **common,
            )
    else:
        if aretomo_dir is None:
            raise ConfigError("batch plan aretomo3 needs --aretomo-dir FOLDER")
        with cli_flags(PLAN_FLAGS):
            plan = plan_aretomo3(
                aretomo_dir,
                output_dir,
                include=include,
                dose_per_tilt_e_per_a2=dose_per_tilt,
                voltage_kv=voltage,
                spherical_aberration_mm=spherical_aberration,
                amplitude_contrast=amplitude_contrast,
                **common,
            )
    if dry_run:
        typer.echo(f"# {plan.manifest_path}")
        typer.echo(plan.manifest.to_json())
        typer.echo(f"# {plan.script_path}")
        typer.echo(plan.script)
    else:
        typer.echo(
            f"{len(plan.manifest.entries)} tomograms planned: {plan.manifest_path}"
        )
        # quoted: a path with spaces pasted as is would be two arguments
        typer.echo(
            "submit with: tmfast batch submit " + shlex.quote(str(plan.manifest_path))
        )


@batch_app.command("submit")
def submit_cmd(manifest: _ManifestArg) -> None:
    """Submit the batch's job array with sbatch; print the job id."""
    from tmfast.batch.plan import submit

    job_id = submit(manifest)
    typer.echo(f"submitted job {job_id}")


@batch_app.command("status")
def status_cmd(
    manifest: _ManifestArg,
    no_queue: bool = typer.Option(False, "--no-queue", help="Do not ask squeue."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Summarise done / running / pending / failed / not-submitted tomograms."""
    from tmfast.batch.plan import batch_status

    states = batch_status(manifest, query_queue=not no_queue)
    if as_json:
        typer.echo(json.dumps([s.__dict__ for s in states], indent=2))
        return
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    order = ("done", "running", "pending", "failed", "not-submitted")
    typer.echo(
        ", ".join(f"{counts.get(k, 0)} {k}" for k in order) + f" (of {len(states)})"
    )
    for s in states:
        if s.state != "done":
            typer.echo(
                f"  [{s.index}] {s.key}: {s.state}"
                + (f" - {s.detail}" if s.detail else "")
            )


@batch_app.command("resume")
def resume_cmd(manifest: _ManifestArg) -> None:
    """Resubmit only the tomograms that are neither done nor queued."""
    from tmfast.batch.plan import resume

    with cli_flags(PLAN_FLAGS):
        result = resume(manifest)
    if result is None:
        typer.echo("nothing to resume: every tomogram is done or queued")
    else:
        job_id, idx = result
        typer.echo(
            f"resubmitted {len(idx)} tomograms as job {job_id}: "
            + ",".join(str(i) for i in idx)
        )


@batch_app.command("finish")
def finish_cmd(
    manifest: _ManifestArg,
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Merged STAR (default particles.star)."
    ),
    number_of_particles: int | None = typer.Option(None, "-n", "--number-of-particles"),
    cutoff: float | None = typer.Option(None, "-c", "--cutoff"),
    number_of_false_positives: float | None = typer.Option(
        None, "--number-of-false-positives"
    ),
    allow_incomplete: bool = typer.Option(
        False, "--allow-incomplete", help="Merge although some are not matched."
    ),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Extract every matched tomogram and merge the particles into one STAR file."""
    from tmfast.batch.plan import finish

    flags = {
        "n_particles": "-n/--number-of-particles",
        "cutoff": "-c/--cutoff",
        "n_false_positives": "--number-of-false-positives",
        "particle_diameter_a": "--particle-diameter (of batch plan)",
    }
    with cli_flags(flags):
        path, counts = finish(
            manifest,
            output=output,
            overwrite=overwrite,
            allow_incomplete=allow_incomplete,
            n_particles=number_of_particles,
            cutoff=cutoff,
            n_false_positives=number_of_false_positives,
        )
    typer.echo(f"{sum(counts.values())} particles from {len(counts)} tomograms: {path}")


@batch_app.command("run-task")
def run_task_cmd(
    manifest: _ManifestArg,
    index: int = typer.Option(
        ..., "--index", help="Array index ($SLURM_ARRAY_TASK_ID)."
    ),
    progress_interval: float = typer.Option(
        60.0, "--progress-interval", help="Seconds between progress lines."
    ),
) -> None:
    """Match (resuming from a checkpoint) and extract one manifest entry."""
    from tmfast.batch.plan import run_task

    with cli_flags(PLAN_FLAGS):
        run_task(manifest, index, progress_interval_s=progress_interval)


def register(app: typer.Typer) -> None:
    """Add ``tmfast batch`` to ``app``."""
    app.add_typer(batch_app, name="batch")
