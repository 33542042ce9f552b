"""SLURM job-array scripts and the sbatch / squeue / scancel calls around them.

Scripts are rendered from :class:`SlurmOptions`; every command line in them is built
with :func:`shlex.join`, so paths with spaces or quotes stay one argument. The only
shell expansion left in a script is ``$SLURM_ARRAY_TASK_ID`` (and
``$SLURM_CPUS_PER_TASK`` for the thread count). This module runs on a login node:
it needs no GPU and imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tmfast.errors import ConfigError, TmfastError

__all__ = [
    "SlurmError",
    "SlurmOptions",
    "format_array_indices",
    "parse_job_id",
    "queue_states",
    "render_array_script",
    "scancel",
    "script_jobs",
    "submit_script",
]

_TIME_RE = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")
_MEM_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)


class SlurmError(TmfastError, RuntimeError):
    """sbatch, squeue or scancel failed or is not installed."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmOptions:
    """Resources and environment of the batch's SLURM array job.

    Attributes
    ----------
    job_name
        ``--job-name``.
    partition, qos, account
        ``--partition``, ``--qos``, ``--account`` (omitted when ``None``).
    gres
        ``--gres`` (e.g. ``gpu:1``, ``gpu:a100:2``).
    gpus_per_task
        ``--gpus-per-task``: GPUs one array task uses (one tomogram on all of them).
        With ``gres``/``gpus_per_task`` unset, no GPU is requested.
    cpus_per_task
        ``--cpus-per-task`` (also exported as ``OMP_NUM_THREADS``).
    mem
        ``--mem`` (``16G``, ``4000M``, ...).
    time
        ``--time`` (``[D-]HH:MM:SS``, ``MM``, ...).
    array_throttle
        Most array tasks running at once (``--array=...%N``).
    modules
        ``module load`` lines, in order.
    container
        Apptainer/Singularity image: the task runs ``apptainer exec --nv --bind ...
        IMAGE tmfast ...``.
    binds
        Extra ``--bind`` folders for the container (the manifest, output, tomogram,
        template and mask folders are bound automatically).
    extra_sbatch
        Further ``#SBATCH`` options, verbatim (``--constraint=a100``).
    tmfast_command
        Command that starts tmfast on the compute node; default: this Python
        (``python -m tmfast``) without modules/container, else ``tmfast``.
    """

    job_name: str = "tmfast"
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    gres: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    array_throttle: int | None = None
    modules: tuple[str, ...] = ()
    container: str | None = None
    binds: tuple[str, ...] = ()
    extra_sbatch: tuple[str, ...] = ()
    tmfast_command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("modules", "binds", "extra_sbatch", "tmfast_command"):
            set_(self, name, tuple(getattr(self, name)))
        for name in ("gpus_per_task", "cpus_per_task", "array_throttle"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {v} must be at least 1")
        if self.time is not None and not _TIME_RE.match(self.time):
            raise ConfigError(
                f"--time {self.time!r} is not a SLURM time; use e.g. 04:00:00 or "
                "1-00:00:00"
            )
        if self.mem is not None and not _MEM_RE.match(self.mem):
            raise ConfigError(f"--mem {self.mem!r} is not a SLURM size; use e.g. 16G")
        if self.mem is not None and self.mem.isdigit() and int(self.mem) < 1024:
            # SLURM reads a bare number as megabytes: "32" is 32 MB, surely meant as GB
            raise ConfigError(
                f"--mem {self.mem}: SLURM reads a number without a unit as megabytes "
                f"({self.mem} MB is too little for matching); write {self.mem}G"
            )
        if not re.match(r"^[\w.+-]+$", self.job_name):
            raise ConfigError(
                f"--job-name {self.job_name!r}: use letters, digits, '.', '_', '+', '-'"
            )
        for opt in self.extra_sbatch:
            if not opt.startswith("--") or "\n" in opt:
                raise ConfigError(
                    f"--sbatch-option {opt!r} must look like --name=value"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlurmOptions:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def command(self) -> list[str]:
        """The command that starts tmfast in a task (before the container wrapper)."""
        if self.tmfast_command:
            return list(self.tmfast_command)
        if self.container or self.modules:
            return ["tmfast"]
        import sys

        return [sys.executable, "-m", "tmfast"]


def format_array_indices(indices: Sequence[int], throttle: int | None = None) -> str:
    """Return a compact ``--array`` value: ``0-3,7,9-10%4``.

    Raises
    ------
    ConfigError
        If ``indices`` is empty or has negative values.
    """
    idx = sorted({int(i) for i in indices})
    if not idx:
        raise ConfigError("no array indices to submit")
    if idx[0] < 0:
        raise ConfigError(f"array index {idx[0]} is negative")
    parts: list[str] = []
    start = prev = idx[0]
    for i in [*idx[1:], None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    out = ",".join(parts)
    return f"{out}%{throttle}" if throttle else out


def render_array_script(
    *,
    manifest_path: Path,
    n_tasks: int,
    log_dir: Path,
    options: SlurmOptions,
    bind_paths: Sequence[Path] = (),
    task_args: Sequence[str] = (),
) -> str:
    """Render the job-array script that runs ``tmfast batch run-task`` per entry.

    Parameters
    ----------
    manifest_path
        Absolute path of the manifest the tasks read.
    n_tasks
        Number of manifest entries (array ``0-(n_tasks-1)``).
    log_dir
        Folder for ``%x_%A_%a.out`` logs.
    options
        SLURM resources and environment.
    bind_paths
        Folders the container must see (ignored without a container).
    task_args
        Extra arguments for ``run-task``.

    Returns
    -------
    str
        The script text.

    Raises
    ------
    ConfigError
        If ``n_tasks`` is not positive.
    """
    if n_tasks < 1:
        raise ConfigError("the manifest has no tomograms to submit")
    o = options
    lines = ["#!/bin/bash"]
    sb: list[tuple[str, str | int | None]] = [
        ("job-name", o.job_name),
        ("array", format_array_indices(range(n_tasks), o.array_throttle)),
        # '%' in a folder name would be read as a filename pattern: '%%' is a '%'
        ("output", str(log_dir).replace("%", "%%") + "/%x_%A_%a.out"),
        ("ntasks", 1),
        ("partition", o.partition),
        ("qos", o.qos),
        ("account", o.account),
        ("gres", o.gres),
        ("gpus-per-task", o.gpus_per_task),
        ("cpus-per-task", o.cpus_per_task),
        ("mem", o.mem),
        ("time", o.time),
    ]
    for key, value in sb:
        if value is not None:
            lines.append("#SBATCH " + shlex.join([f"--{key}={value}"]))
    for extra in o.extra_sbatch:
        lines.append("#SBATCH " + shlex.join([extra]))
    lines += [
        "",
        "# Written by 'tmfast batch plan'; each array task matches and extracts the",
        "# manifest entry of index SLURM_ARRAY_TASK_ID (resuming from its checkpoint).",
        "set -euo pipefail",
    ]
    for m in o.modules:
        lines.append(shlex.join(["module", "load", m]))
    if o.cpus_per_task:
        lines.append('export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"')
    cmd = [*o.command(), "batch", "run-task", str(manifest_path), *task_args]
    if o.container:
        binds = sorted({str(p) for p in bind_paths} | set(o.binds))
        wrapper = ["apptainer", "exec", "--nv"]
        for b in binds:
            wrapper += ["--bind", b]
        cmd = [*wrapper, o.container, *cmd]
    lines.append(shlex.join(cmd) + ' --index "$SLURM_ARRAY_TASK_ID"')
    return "\n".join(lines) + "\n"


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0])
    if exe is None:
        raise SlurmError(
            f"{argv[0]} not found on PATH: run on a SLURM login node (or load the "
            f"slurm module) to {what}; 'tmfast batch plan --dry-run' works anywhere"
        )
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within 120 s ({what})") from None


def parse_job_id(stdout: str) -> int:
    """Return the job id printed by ``sbatch --parsable`` (``123`` or ``123;cluster``)
    or plain ``sbatch`` (``Submitted batch job 123``).

    Raises
    ------
    SlurmError
        If no job id is found.
    """
    text = stdout.strip()
    m = re.search(r"Submitted batch job (\d+)", text) or re.match(
        r"^(\d+)(;\S+)?$", text
    )
    if not m:
        raise SlurmError(f"cannot read a job id from sbatch output {text!r}")
    return int(m.group(1))


def submit_script(
    script: Path, *, array: str | None = None, extra_args: Sequence[str] = ()
) -> int:
    """Submit ``script`` with sbatch and return the job id.

    Parameters
    ----------
    script
        Job script.
    array
        ``--array`` value overriding the script's (for resubmitting some tasks).
    extra_args
        Further sbatch arguments.

    Raises
    ------
    SlurmError
        If sbatch is missing or rejects the job (the message names sbatch's reason,
        e.g. an invalid partition).
    """
    argv = ["sbatch", "--parsable"]
    if array is not None:
        argv.append(f"--array={array}")
    argv += [*extra_args, str(script)]
    proc = _run(argv, "submit the batch")
    if proc.returncode != 0:
        err = " ".join(proc.stderr.split()) or f"exit code {proc.returncode}"
        hint = ""
        if "partition" in err.lower():
            hint = "; check --partition (sinfo lists the partitions)"
        elif "qos" in err.lower() or "account" in err.lower():
            hint = "; check --qos / --account (sacctmgr show assoc user=$USER)"
        raise SlurmError(f"sbatch rejected {script}: {err}{hint}")
    return parse_job_id(proc.stdout)


def queue_states(jobs: Mapping[int, Sequence[int]]) -> dict[int, str]:
    """Return ``{array_index: state}`` for the queued or running tasks of the jobs.

    Parameters
    ----------
    jobs
        ``{job_id: array indices it was submitted with}``; the indices stand for
        the whole job while squeue has not split it into tasks yet.

    Returns
    -------
    dict
        State (``PENDING``, ``RUNNING``, ...) per array index; a later job (higher
        id) wins for an index listed by several. Finished tasks are absent (squeue
        forgets them).

    Raises
    ------
    SlurmError
        If squeue is missing or fails for a reason other than unknown job ids.
    """
    if not jobs:
        return {}
    argv = [
        "squeue",
        "-h",
        "-r",
        "-j",
        ",".join(str(j) for j in sorted(jobs)),
        "-o",
        # %F: the array's base job id (the id sbatch printed), %K: the array index
        # (or a range such as 1-3%2 while unsplit), %T: the state. Not %A/%a: for
        # array elements %A is each element's own job id and %a is the account.
        "%F %K %T",
    ]
    proc = _run(argv, "read the queue")
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return {}
        raise SlurmError(f"squeue failed: {' '.join(proc.stderr.split())}")
    states: dict[int, tuple[int, str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        job, task, state = int(parts[0]), parts[1], parts[2]
        indices = _expand_task_field(task)
        if indices is None:
            indices = list(jobs.get(job, ()))
        for idx in indices:
            prev = states.get(idx)
            if prev is None or job >= prev[0]:
                states[idx] = (job, state)
    return {k: v[1] for k, v in states.items()}


def script_jobs(script: str | Path) -> dict[int, list[int]]:
    """Return the user's queued or running array jobs whose batch script is ``script``.

    Finds jobs the batch has no record of: ``submit_array.sh`` given to ``sbatch`` by
    hand. squeue's ``%o`` (the job's command: its batch script) is compared with
    ``script`` after resolving it against the job's working directory (``%Z``).

    Returns
    -------
    dict
        ``{job_id: array indices squeue lists for it}`` (an index range still pending
        as one line is expanded).

    Raises
    ------
    SlurmError
        If squeue is missing or fails.
    """
    import getpass

    argv = ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%F|%K|%Z|%o"]
    proc = _run(argv, "read the queue")
    if proc.returncode != 0:
        raise SlurmError(f"squeue failed: {' '.join(proc.stderr.split())}")
    target = Path(script).resolve()
    out: dict[int, list[int]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|", 3)
        if len(parts) != 4 or not parts[0].strip().isdigit():
            continue
        job, task, workdir, command = (p.strip() for p in parts)
        path = Path(command)
        if not path.is_absolute():
            path = Path(workdir) / path
        if path.resolve() != target:
            continue
        out.setdefault(int(job), []).extend(_expand_task_field(task) or [])
    return out


def _expand_task_field(task: str) -> list[int] | None:
    """Array indices in squeue's ``%K`` field; ``None`` when it names none."""
    body = task.strip("[]").split("%")[0]
    out: list[int] = []
    for part in body.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                return None
            out.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            return None
    return out


def scancel(job_id: int, index: int | None = None) -> None:
    """Cancel a job, or one array task of it.

    Raises
    ------
    SlurmError
        If scancel is missing or fails.
    """
    target = str(job_id) if index is None else f"{job_id}_{index}"
    proc = _run(["scancel", target], "cancel a job")
    if proc.returncode != 0:
        raise SlurmError(f"scancel {target} failed: {' '.join(proc.stderr.split())}")
