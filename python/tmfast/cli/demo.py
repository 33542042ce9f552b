"""`tmfast demo`: plant, match and extract on synthetic data; compare with the truth."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

logger = logging.getLogger(__name__)


def demo(
    output_dir: Path | None = typer.Option(
        None,
        "--output-dir",
        "-o",
        help="Keep the synthetic inputs, maps, job and "
        "particles here (default: a temporary folder, removed).",
    ),
    seed: int = typer.Option(2024, "--seed", help="Seed of the synthetic data."),
    n_particles: int = typer.Option(8, "--n-particles", help="Particles to plant."),
    backend: str = typer.Option("cpu", "--backend", help="Compute backend."),
) -> None:
    """Synthesise a tomogram with planted particles, match, extract and check."""
    from tmfast.cli.match import _progress
    from tmfast.errors import ConfigError
    from tmfast.matching.demo import run_demo

    if n_particles < 1:
        raise ConfigError(
            f"--n-particles {n_particles}: plant at least 1 particle (default 8)"
        )
    if seed < 0:
        raise ConfigError(f"--seed {seed}: give a seed >= 0 (default 2024)")
    report, stop = _progress()
    try:
        result = run_demo(
            output_dir=output_dir,
            seed=seed,
            n_particles=n_particles,
            progress=report,
            backend=backend,
        )
    finally:
        stop()
    typer.echo(result.table())
    n_ok = int(result.recovered.sum())
    typer.echo(
        f"recovered {n_ok}/{len(result.recovered)} planted particles (within 2 voxels "
        f"and {result.angular_tolerance_deg:.1f}°) with {result.n_rotations} rotations "
        f"in {result.seconds:.1f} s; {len(result.found_scores)} picks above the "
        f"cutoff {result.cutoff:.3f}"
    )
    if result.output_dir is not None:
        typer.echo(f"files kept in {result.output_dir}")
    if not result.success:
        typer.echo("demo FAILED: not every planted particle was recovered", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command(name="demo")(demo)
