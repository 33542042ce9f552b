"""`tmfast angles`: build a rotation set, report its size and covering radius, write it.

The set is what ``tmfast match`` would search: pytom-match-pick's HEALPix set for an
angular step (given directly or from the particle diameter, Crowther's rule), a
custom list from a file, optionally reduced by a template symmetry, or tmfast's
covering-optimal set (``--optimal``). ``-o FILE`` writes it as text, three ZXZ Euler
angles in radians per line, readable by ``--angular-search FILE``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

__all__ = ["angles", "register"]


def angles(
    angular_search: str | None = typer.Option(
        None,
        "--angular-search",
        "-a",
        help="Angular step in degrees, or a text file of ZXZ angles (radians).",
        rich_help_panel="Angular sampling",
    ),
    particle_diameter: float | None = typer.Option(
        None,
        "--particle-diameter",
        help="Particle diameter in Angstrom; sets the step by Crowther's rule.",
        rich_help_panel="Angular sampling",
    ),
    voxel_size_angstrom: float | None = typer.Option(
        None,
        "--voxel-size-angstrom",
        help="Voxel size in Angstrom (with --particle-diameter).",
        rich_help_panel="Angular sampling",
    ),
    low_pass: float | None = typer.Option(
        None,
        "--low-pass",
        help="Low-pass resolution in Angstrom (with --particle-diameter).",
        rich_help_panel="Angular sampling",
    ),
    symmetry: str = typer.Option(
        "C1",
        "--symmetry",
        "-s",
        help="Template symmetry: n or Cn (about z), Dn, T, O or I.",
        rich_help_panel="Angular sampling",
    ),
    optimal: bool = typer.Option(
        False,
        "--optimal",
        help="Use tmfast's covering-optimal set (fewer rotations, same coverage; "
        "indices differ from pytom-match-pick).",
        rich_help_panel="Angular sampling",
    ),
    n_samples: int = typer.Option(
        200_000,
        "--n-samples",
        help="Test rotations of the covering-radius estimate.",
        rich_help_panel="Angular sampling",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write the set here (text, ZXZ radians).",
        rich_help_panel="Input / Output",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing output file.",
        rich_help_panel="Input / Output",
    ),
) -> None:
    """Print the size and covering radius of a rotation set; optionally write it."""
    from tmfast._fileio import atomic_path
    from tmfast.errors import ConfigError
    from tmfast.geometry import angles as ga

    # validate every option before any work (the set and its radius take seconds)
    if not 1000 <= n_samples <= 100_000_000:
        raise ConfigError(f"--n-samples {n_samples} is invalid; give 1000 to 10^8")
    if angular_search is None:
        if particle_diameter is None:
            raise ConfigError(
                "no angular sampling given; pass --angular-search DEG|FILE, or "
                "--particle-diameter and --voxel-size-angstrom"
            )
        if voxel_size_angstrom is None:
            raise ConfigError(
                f"--particle-diameter {particle_diameter:g} needs the voxel size for "
                "Crowther's rule; pass --voxel-size-angstrom"
            )
        step = ga.angle_step_from_diameter(
            particle_diameter, voxel_size_angstrom, low_pass
        )
        typer.echo(f"angular step (Crowther): {step:.4f} deg")
        search: float | str = step
    else:
        if particle_diameter is not None:
            raise ConfigError(
                "give either --angular-search or --particle-diameter, not both"
            )
        if voxel_size_angstrom is not None or low_pass is not None:
            raise ConfigError(
                "--voxel-size-angstrom and --low-pass only set the step with "
                "--particle-diameter; drop them, or give --particle-diameter instead "
                "of --angular-search"
            )
        search = angular_search
    if output is not None:
        # refuse early, before any work, if the output exists or its folder cannot
        # be one (a file in the way)
        from tmfast._fileio import check_output_folder, check_writable

        check_writable(output, overwrite=overwrite)
        check_output_folder(output.parent, "-o/--output", output)

    rotations = ga.angle_set(search, symmetry=symmetry, optimal=optimal)
    typer.echo(f"rotations: {len(rotations)}")
    if len(rotations):
        radius = ga.covering_radius_deg(
            rotations, symmetry=symmetry, n_samples=n_samples
        )
        with_sym = "" if symmetry.upper() in ("C1", "1") else f", with {symmetry}"
        typer.echo(
            f"covering radius: {radius:.3f} deg (estimated, {n_samples} samples"
            f"{with_sym})"
        )
    typer.echo(f"sha256: {ga.angle_set_sha256(rotations)}")
    if output is not None:
        with atomic_path(output, overwrite=overwrite) as tmp:
            np.savetxt(
                tmp,
                rotations,
                fmt="%.17g",
                header="ZXZ Euler angles (phi theta psi) in radians, tmfast angles",
            )
        typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("angles")(angles)
