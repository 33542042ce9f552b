"""SLURM script rendering and the sbatch/squeue plumbing, without a cluster.

The script is parsed back with shlex (the shell's own quoting rules) to check that
every path stays one argument; sbatch/squeue are replaced by small fake programs
on PATH that record their arguments.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import pytest
from tmfast.batch.slurm import (
    SlurmError,
    SlurmOptions,
    format_array_indices,
    parse_job_id,
    queue_states,
    render_array_script,
    submit_script,
)
from tmfast.errors import ConfigError


def _sbatch_lines(script: str) -> dict[str, str]:
    out = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            (arg,) = shlex.split(line[len("#SBATCH ") :])
            key, _, value = arg[2:].partition("=")
            out[key] = value
    return out


def _command(script: str) -> list[str]:
    last = [ln for ln in script.splitlines() if ln and not ln.startswith("#")][-1]
    return shlex.split(last)


def test_full_options_render_one_line_each(tmp_path: Path) -> None:
    manifest = tmp_path / "my batch" / "manifest.json"
    opts = SlurmOptions(
        job_name="tm",
        partition="gpu",
        qos="normal",
        account="lab",
        gres="gpu:1",
        cpus_per_task=8,
        mem="32G",
        time="04:00:00",
        array_throttle=4,
        modules=("cuda/12.2", "tmfast/1.0"),
        extra_sbatch=("--constraint=a100",),
    )
    script = render_array_script(
        manifest_path=manifest,
        n_tasks=12,
        log_dir=tmp_path / "my batch" / "logs",
        options=opts,
    )
    assert script.startswith("#!/bin/bash\n")
    sb = _sbatch_lines(script)
    assert sb == {
        "job-name": "tm",
        "array": "0-11%4",
        "output": str(tmp_path / "my batch" / "logs" / "%x_%A_%a.out"),
        "ntasks": "1",
        "partition": "gpu",
        "qos": "normal",
        "account": "lab",
        "gres": "gpu:1",
        "cpus-per-task": "8",
        "mem": "32G",
        "time": "04:00:00",
        "constraint": "a100",
    }
    body = script.splitlines()
    assert "module load cuda/12.2" in body and "module load tmfast/1.0" in body
    assert body.index("module load cuda/12.2") < body.index("module load tmfast/1.0")
    cmd = _command(script)
    # With modules the tasks call the module's tmfast; the path stays one argument.
    assert cmd == [
        "tmfast",
        "batch",
        "run-task",
        str(manifest),
        "--index",
        "$SLURM_ARRAY_TASK_ID",
    ]
    assert body[-1].endswith('--index "$SLURM_ARRAY_TASK_ID"')


def test_container_wrapper_and_binds(tmp_path: Path) -> None:
    opts = SlurmOptions(
        container="/images/tm fast.sif", gpus_per_task=2, binds=("/scratch",)
    )
    script = render_array_script(
        manifest_path=tmp_path / "m.json",
        n_tasks=1,
        log_dir=tmp_path,
        options=opts,
        bind_paths=[tmp_path, Path("/data/tomos")],
    )
    assert _sbatch_lines(script)["gpus-per-task"] == "2"
    assert _sbatch_lines(script)["array"] == "0"
    cmd = _command(script)
    assert cmd[:3] == ["apptainer", "exec", "--nv"]
    binds = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--bind"]
    assert sorted(binds) == sorted([str(tmp_path), "/data/tomos", "/scratch"])
    i = cmd.index("/images/tm fast.sif")
    assert cmd[i + 1 : i + 4] == ["tmfast", "batch", "run-task"]


def test_default_command_is_this_python(tmp_path: Path) -> None:
    import sys

    script = render_array_script(
        manifest_path=tmp_path / "m.json",
        n_tasks=3,
        log_dir=tmp_path,
        options=SlurmOptions(),
    )
    assert _command(script)[:3] == [sys.executable, "-m", "tmfast"]
    assert "partition" not in _sbatch_lines(script)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time": "4 hours"}, "--time"),
        ({"mem": "lots"}, "--mem"),
        ({"mem": "32"}, "megabytes.*32G"),
        ({"array_throttle": 0}, "--array-throttle"),
        ({"job_name": "a b"}, "--job-name"),
        ({"extra_sbatch": ("constraint=a100",)}, "--sbatch-option"),
    ],
)
def test_bad_options_are_one_clear_line(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        SlurmOptions(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_unitless_mem_is_megabytes_and_large_values_pass() -> None:
    """SLURM reads --mem without a unit as MB: a small bare number is refused (it
    was surely meant as GB), a large one (64000 MB) is a legitimate size."""
    assert SlurmOptions(mem="64000").mem == "64000"
    assert SlurmOptions(mem="32G").mem == "32G"


def test_array_indices() -> None:
    assert format_array_indices([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"
    assert format_array_indices([5, 3, 4, 4], throttle=2) == "3-5%2"
    assert format_array_indices([4]) == "4"
    with pytest.raises(ConfigError):
        format_array_indices([])


def test_parse_job_id() -> None:
    assert parse_job_id("1234\n") == 1234
    assert parse_job_id("99;cluster\n") == 99
    assert parse_job_id("Submitted batch job 77\n") == 77
    with pytest.raises(SlurmError):
        parse_job_id("sbatch: error: something")


def _fake(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    p = bin_dir / name
    p.write_text("#!/bin/bash\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def test_sbatch_missing_and_rejections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/bash\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SlurmError, match="sbatch not found on PATH") as err:
        submit_script(script)
    assert "\n" not in str(err.value)

    bins = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bins) + os.pathsep + "/usr/bin:/bin")
    _fake(
        bins,
        "sbatch",
        'echo "sbatch: error: invalid partition specified: gpux" >&2\n'
        "echo 'sbatch: error: Batch job submission failed: Invalid partition name "
        "specified' >&2\nexit 1\n",
    )
    with pytest.raises(SlurmError, match=r"invalid partition specified: gpux.*sinfo"):
        submit_script(script)

    log = tmp_path / "args.txt"
    _fake(bins, "sbatch", f'echo "$@" > {shlex.quote(str(log))}\necho "4242;local"\n')
    assert submit_script(script, array="1,3%2") == 4242
    assert log.read_text().split() == ["--parsable", "--array=1,3%2", str(script)]


def test_queue_states_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bins = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bins) + os.pathsep + "/usr/bin:/bin")
    _fake(
        bins,
        "squeue",
        "cat <<'EOF'\n10 0 RUNNING\n10 [1-3%2] PENDING\n"
        "11 2 RUNNING\n12 (null) PENDING\nEOF\n",
    )
    got = queue_states({10: [0, 1, 2, 3], 11: [2], 12: [5, 6]})
    assert got == {
        0: "RUNNING",
        1: "PENDING",
        2: "RUNNING",
        3: "PENDING",
        5: "PENDING",
        6: "PENDING",
    }
    _fake(
        bins,
        "squeue",
        "echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n",
    )
    assert queue_states({10: [0]}) == {}
