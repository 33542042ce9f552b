"""Preemption (issue 6): SIGTERM/SIGUSR1 stop run_match after a whole batch, with a
checkpoint from which a rerun resumes to maps equal, bit for bit, to an
uninterrupted run's (the oracle). The CLI test runs `tmfast match` in a subprocess
and signals it after its first progress line, as SLURM would before a kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
from _synthetic import sphere_mask, write_angle_file, write_mrc
from tmfast.backends.cpu import CpuBackend
from tmfast.matching.config import MatchConfig
from tmfast.matching.engine import MatchInterrupted, output_paths, run_match

N = 8
N_ROT = 70  # three batches of 32 in the CLI (its default batch size)
ANGLES = np.array([[0.09 * i, 0.2 + 0.037 * i, 0.31 * i] for i in range(N_ROT)])


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(21)
    d = tmp_path / "in"
    d.mkdir()
    return {
        "tomogram": write_mrc(d / "tomo.mrc", rng.standard_normal((16, 18, 20)), 5.0),
        "template": write_mrc(d / "tmpl.mrc", rng.standard_normal((N, N, N)), 5.0),
        "mask": write_mrc(d / "mask.mrc", sphere_mask(N, 3.5), 5.0),
        "angles": write_angle_file(d / "angles.txt", ANGLES),
    }


def _config(files: dict[str, Path], dest: Path, **kw: Any) -> MatchConfig:
    return MatchConfig(
        template=files["template"],
        tomogram=files["tomogram"],
        mask=files["mask"],
        destination=dest,
        angular_search=str(files["angles"]),
        tilt_angles=(-50.0, 55.0),
        low_pass_a=12.0,
        backend="cpu",
        random_phase_correction=True,
        rng_seed=5,
        **kw,
    )


def _maps(dest: Path) -> tuple[np.ndarray, np.ndarray]:
    p = output_paths(dest, "tomo")
    return mrcfile.read(p["scores"]), mrcfile.read(p["angles"])


class _SignalOnBatch(CpuBackend):
    """Sends ``signum`` to this process while scoring batch number ``at``."""

    def __init__(self, signum: int, at: int) -> None:
        super().__init__(workers=1)
        self.signum, self.at, self.calls = signum, at, 0

    def score_rotations(self, first_index: int, matrices: np.ndarray) -> None:
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.signum)
        super().score_rotations(first_index, matrices)


def test_sigusr1_checkpoints_and_resume_is_bit_identical(
    files: dict[str, Path], tmp_path: Path
) -> None:
    ref = run_match(_config(files, tmp_path / "ref"), backend=CpuBackend(workers=1))
    dest = tmp_path / "run"
    cfg = _config(files, dest)
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(MatchInterrupted, match="stopped by SIGUSR1") as info:
        run_match(cfg, backend=_SignalOnBatch(signal.SIGUSR1, 2), batch_rotations=10)
    assert info.value.exit_code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == before  # handlers restored
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    assert info.value.checkpoint == ckpt and ckpt.exists()
    assert not output_paths(dest, "tomo")["scores"].exists()
    with np.load(ckpt) as z:
        assert int(z["tile_n_done"]) == 20  # the batch in flight was finished
    job = run_match(cfg, backend=CpuBackend(workers=1), batch_rotations=10)
    assert job.resumed_rotations == 20
    for a, b in zip(_maps(dest), _maps(tmp_path / "ref"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert job.stats == ref.stats and job.noise_mean == ref.noise_mean
    assert not ckpt.exists()


def test_sigterm_is_handed_to_the_callers_handler(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """The batch task installs its own SIGTERM handler (it records 'interrupted');
    run_match checkpoints first, then calls it."""

    class Terminated(BaseException):
        pass

    def caller_handler(signum: int, _frame: Any) -> None:
        raise Terminated(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, caller_handler)
    dest = tmp_path / "run"
    try:
        with pytest.raises(Terminated, match="SIGTERM"):
            run_match(
                _config(files, dest, volume_split_xyz=(2, 1, 1)),
                backend=_SignalOnBatch(signal.SIGTERM, 1),
                batch_rotations=N_ROT,  # one batch per tile: stop between tiles
            )
        assert signal.getsignal(signal.SIGTERM) is caller_handler
    finally:
        signal.signal(signal.SIGTERM, old)
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    with np.load(ckpt) as z:
        assert int(z["tile_pos"]) == 1 and "tile_n_done" not in z.files
    job = run_match(
        _config(files, dest, volume_split_xyz=(2, 1, 1)),
        backend=CpuBackend(workers=1),
    )
    assert job.resumed_rotations == N_ROT
    ref = run_match(
        _config(files, tmp_path / "ref", volume_split_xyz=(2, 1, 1)),
        backend=CpuBackend(workers=1),
    )
    for a, b in zip(_maps(dest), _maps(tmp_path / "ref"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert job.stats == ref.stats


_CLI_CHILD = """
import sys, time
from tmfast.backends.cpu import CpuBackend

_score = CpuBackend.score_rotations
def slow(self, first_index, matrices):
    _score(self, first_index, matrices)
    print("test-child: scored a batch", flush=True)  # lets the test signal mid-run
    time.sleep(0.5)
CpuBackend.score_rotations = slow

from tmfast.cli import main
main(sys.argv[1:])
"""


def _cli_argv(files: dict[str, Path], dest: Path) -> list[str]:
    return [
        "match",
        "-t", str(files["template"]),
        "-v", str(files["tomogram"]),
        "-m", str(files["mask"]),
        "-d", str(dest),
        "--angular-search", str(files["angles"]),
        "-a", "-50", "55",
        "--low-pass", "12",
        "--backend", "cpu",
        "-r", "--rng-seed", "5",
    ]  # fmt: skip


def _run_cli_signalled(
    argv: list[str], signals: list[signal.Signals]
) -> tuple[int, str]:
    """Run `tmfast match` in a child; after its first progress line and a scored
    batch, send ``signals`` (0.1 s apart). Return the exit code and all output."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "python"))
    env.pop("SLURM_JOB_ID", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI_CHILD, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a terminal's Ctrl-C: SIGINT not ignored in the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        seen_progress = False
        for line in proc.stdout:
            lines.append(line)
            seen_progress |= "matching: " in line and f"/{N_ROT}" in line
            if seen_progress and "test-child: scored a batch" in line:
                for i, sig in enumerate(signals):
                    if i:
                        time.sleep(0.1)
                    proc.send_signal(sig)
                break
            assert time.monotonic() < deadline, "".join(lines)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + out


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_stop_signal_exits_and_rerun_resumes(
    files: dict[str, Path], tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """SIGTERM (SLURM) and a first Ctrl-C (SIGINT) both finish the batch, write a
    checkpoint, print one line and exit 128 + signum; a rerun resumes from it."""
    ref = tmp_path / "ref"
    run_match(_config(files, ref), backend=CpuBackend(workers=1))
    dest = tmp_path / "run"
    rc, text = _run_cli_signalled(_cli_argv(files, dest), [sig])
    assert rc == code, text
    stop_lines = [ln for ln in text.splitlines() if "tmfast: error: stopped by" in ln]
    assert len(stop_lines) == 1 and sig.name in stop_lines[0], text
    assert "rerun the same command to resume" in stop_lines[0], text
    assert "Traceback" not in text
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    assert ckpt.exists() and not output_paths(dest, "tomo")["scores"].exists(), text
    with np.load(ckpt) as z:
        n_done = int(z["tile_n_done"])
    assert n_done % 32 == 0 and 0 < n_done < N_ROT
    job = run_match(MatchConfig(**{**_config(files, dest).to_dict()}))
    assert job.resumed_rotations == n_done
    for a, b in zip(_maps(dest), _maps(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cli_second_sigint_aborts_at_once(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """A second Ctrl-C does not wait for the batch: one line, exit 130, no outputs
    and no checkpoint from this run."""
    dest = tmp_path / "run"
    rc, text = _run_cli_signalled(_cli_argv(files, dest), [signal.SIGINT] * 2)
    assert rc == 130, text
    assert "Traceback" not in text
    err = [ln for ln in text.splitlines() if ln.startswith("tmfast:")]
    assert len(err) == 1, text
    assert err[0].startswith("tmfast: error: aborted by Ctrl-C: the current batch"), (
        text
    )
    assert "Ctrl-C again aborts at once" in text
    p = output_paths(dest, "tomo")
    assert not p["scores"].exists() and not p["checkpoint"].exists(), text


def test_signal_in_the_last_batch_completes_the_outputs(
    files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is left to checkpoint: the run finishes and writes all three outputs."""
    dest = tmp_path / "run"
    job = run_match(
        _config(files, dest),
        backend=_SignalOnBatch(signal.SIGUSR1, 1),
        batch_rotations=N_ROT,
    )
    assert "SIGUSR1 arrived after the search: outputs complete" in caplog.text
    p = output_paths(dest, "tomo")
    assert p["job"].exists() and not p["checkpoint"].exists()
    assert job.resumed_rotations == 0
    ref = tmp_path / "ref"
    run_match(_config(files, ref), backend=CpuBackend(workers=1))
    for a, b in zip(_maps(dest), _maps(ref), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(
    __import__("tmfast.backends._cpu_fft", fromlist=["x"]).fftw_available() is not None,
    reason="pyFFTW not installed: no FFTW plans to keep",
)
def test_resume_plans_from_the_checkpoint_not_from_the_cache_file(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint keeps the FFTW wisdom of the run that wrote it and a rerun in
    a new process plans from it, not from the wisdom cache, which array tasks on one
    node may have rewritten meanwhile with other plans (other rounding, ~1e-7).
    Here the cache is garbage by the time of the rerun: read, it would be reported
    as unreadable and the plans measured again."""
    ref = tmp_path / "ref"
    run_match(_config(files, ref), backend=CpuBackend(workers=1))
    # the children start from the plans the reference run made
    session = Path(os.environ["TMFAST_FFTW_WISDOM"])
    cache = tmp_path / "wisdom.json"
    cache.write_bytes(session.read_bytes())
    monkeypatch.setenv("TMFAST_FFTW_WISDOM", str(cache))
    dest = tmp_path / "run"
    argv = _cli_argv(files, dest)
    rc, text = _run_cli_signalled(argv, [signal.SIGTERM])
    assert rc == 143, text
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    with np.load(ckpt) as z:
        state = [str(v) for v in z["plan_state"]]
    assert any("fftwf" in w for w in state), state  # single-precision wisdom
    cache.write_text("{ not json")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "python"))
    env.pop("SLURM_JOB_ID", None)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from tmfast.cli import main; "
         "main(sys.argv[1:])", *argv, "--log", "debug"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "resuming from checkpoint" in out, out
    assert "unreadable" not in out, out
    for a, b in zip(_maps(dest), _maps(ref), strict=True):
        np.testing.assert_array_equal(a, b)
