"""Batches of tomograms on SLURM: project importers, manifest, job-array scripts.

* :mod:`tmfast.batch.relion5` - RELION5 tomograms.star + tilt-series STAR files.
* :mod:`tmfast.batch.aretomo3` - AreTomo3 output folders (.aln, _CTF.txt, _TLT.txt).
* :mod:`tmfast.batch.manifest` - the JSON manifest (one entry per tomogram).
* :mod:`tmfast.batch.slurm` - array scripts, sbatch / squeue / scancel.
* :mod:`tmfast.batch.plan` - plan, submit, status, resume, run-task, finish.

Nothing here needs a GPU: planning runs on a login node.
"""

from __future__ import annotations

from tmfast.batch.aretomo3 import read_aln, read_aretomo3, read_aretomo3_project
from tmfast.batch.manifest import Manifest, ManifestEntry, TomogramEntry
from tmfast.batch.plan import (
    BatchPlan,
    EntryStatus,
    batch_status,
    finish,
    plan_aretomo3,
    plan_relion5,
    resume,
    run_task,
    submit,
    write_metadata_files,
)
from tmfast.batch.relion5 import (
    normalise_tomogram_stem,
    read_relion5_metadata,
    read_relion5_project,
)
from tmfast.batch.slurm import SlurmError, SlurmOptions

__all__ = [
    "BatchPlan",
    "EntryStatus",
    "Manifest",
    "ManifestEntry",
    "SlurmError",
    "SlurmOptions",
    "TomogramEntry",
    "batch_status",
    "finish",
    "normalise_tomogram_stem",
    "plan_aretomo3",
    "plan_relion5",
    "read_aln",
    "read_aretomo3",
    "read_aretomo3_project",
    "read_relion5_metadata",
    "read_relion5_project",
    "resume",
    "run_task",
    "submit",
    "write_metadata_files",
]
