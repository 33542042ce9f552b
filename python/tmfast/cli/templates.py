"""`tmfast create-template`, `create-mask`, `slab-mask`: templates and masks."""

from __future__ import annotations

import enum
import logging
import math
from pathlib import Path

import typer

from tmfast.errors import ConfigError

logger = logging.getLogger(__name__)

_IO = "Input / Output"
_FILT = "Filters"
_MODEL = "Atomic models"
_SHAPE = "Shape"

#: Suffixes read as atomic models (also with .gz); anything else is read as MRC.
_MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")


def _is_model(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(_MODEL_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", *_MODEL_SUFFIXES, ".mrc", ".map", ".rec", ".mrcs", ".em"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _fmt(value: float) -> str:
    return f"{value:g}"


def _check_box_option(box_size: int | None, lowest: int = 1) -> None:
    """Refuse a --box-size that is not a positive number of voxels or is absurdly
    large, before any work (a zero box read as 'the radius fills the box', a huge
    one as numpy's MemoryError traceback)."""
    from tmfast.templates.masks import MAX_BOX

    if box_size is not None and not lowest <= box_size <= MAX_BOX:
        raise ConfigError(
            f"--box-size {box_size}: give the box in voxels, {lowest} to {MAX_BOX} "
            "(a template box is the particle plus a margin)"
        )


def create_template(
    input_map: Path = typer.Option(
        ...,
        "-i",
        "--input-map",
        help="Density map (MRC; EM with --input-voxel-size-angstrom) or atomic "
        "model (.pdb/.cif, optionally .gz).",
        rich_help_panel=_IO,
    ),
    output_file: Path | None = typer.Option(
        None,
        "-o",
        "--output-file",
        help="Output MRC (default: template_{stem}_{voxel}A.mrc).",
        rich_help_panel=_IO,
    ),
    output_voxel_size_angstrom: float = typer.Option(
        ...,
        "--output-voxel-size-angstrom",
        help="Template voxel size in Å (the tomogram's).",
        rich_help_panel=_IO,
    ),
    input_voxel_size_angstrom: float | None = typer.Option(
        None,
        "--input-voxel-size-angstrom",
        help="Voxel size of the map in Å; overrides the header (warns on mismatch).",
        rich_help_panel=_IO,
    ),
    box_size: int | None = typer.Option(
        None,
        "-b",
        "--box-size",
        help="Output box in voxels (crop or pad, centred) (default: map extent).",
        rich_help_panel=_IO,
    ),
    low_pass: float | None = typer.Option(
        None,
        "--low-pass",
        help="Low-pass resolution in Å (raised-cosine edge, 0 beyond it) "
        "(default: output Nyquist, 2 x voxel).",
        rich_help_panel=_FILT,
    ),
    invert: bool = typer.Option(False, "--invert", help="Multiply by -1."),
    mirror: bool = typer.Option(
        False, "-m", "--mirror", help="Mirror along z (flip handedness)."
    ),
    center: bool = typer.Option(
        False, "--center", help="Move the centre of mass to the box centre (maps)."
    ),
    allow_upsampling: bool = typer.Option(
        False,
        "--allow-upsampling",
        help="Allow an output voxel smaller than the input voxel.",
    ),
    model_center: tuple[float, float, float] | None = typer.Option(
        None,
        "--model-center-xyz-angstrom",
        help="Model point (x y z, Å) put at the box centre (default: atom mean).",
        rich_help_panel=_MODEL,
    ),
    b_factor: float = typer.Option(
        0.0,
        "--b-factor",
        help="Uniform B-factor in Å^2 added to every atom.",
        rich_help_panel=_MODEL,
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output."),
) -> None:
    """Make a template from an EM map or atomic model at the tomogram's voxel size."""
    from tmfast._fileio import check_writable, make_folder
    from tmfast.io.mrc import read_volume, write_volume
    from tmfast.templates.maps import check_map_values, template_from_map
    from tmfast.templates.models import read_atom_model, template_from_model

    out_a = output_voxel_size_angstrom
    from tmfast.templates.maps import MIN_TEMPLATE_BOX

    _check_box_option(box_size, MIN_TEMPLATE_BOX)
    if low_pass is not None and not (low_pass > 0 and math.isfinite(low_pass)):
        raise ConfigError(
            f"--low-pass {low_pass:g}: must be a positive resolution in Å (leave it "
            "out for the output Nyquist, 2 x voxel)"
        )
    if output_file is None:
        output_file = Path(f"template_{_stem(input_map)}_{_fmt(out_a)}A.mrc")
    check_writable(output_file, overwrite=overwrite)
    make_folder(output_file.parent, "its folder", output_file)
    if _is_model(input_map):
        if center:
            logger.info("--center: models are centred on --model-center-xyz-angstrom")
        model = read_atom_model(input_map)
        template = template_from_model(
            model,
            out_a,
            box_size=box_size,
            center_xyz_a=model_center,
            lowpass_resolution_a=low_pass,
            b_factor_a2=b_factor,
            invert=invert,
            mirror=mirror,
        )
        source = f"{len(model.elements)} atoms"
    else:
        from tmfast.templates.em import is_em_file, read_em_volume

        em = input_map.is_file() and is_em_file(input_map)
        if em:  # pytom/TOM/cryoCAT maps; their header holds no voxel size
            volume, header_a = read_em_volume(input_map), 0.0
        else:
            volume, header_a = read_volume(input_map, require_voxel_size=False)
        check_map_values(volume, str(input_map))
        in_a: float | None = header_a if header_a > 0 else None
        in_src = "header"
        if input_voxel_size_angstrom is not None:
            if in_a is not None and abs(in_a - input_voxel_size_angstrom) > 1e-3 * in_a:
                logger.warning(
                    "%s: header voxel size %.4f Å, using --input-voxel-size-angstrom "
                    "%.4f Å",
                    input_map,
                    in_a,
                    input_voxel_size_angstrom,
                )
            in_a = input_voxel_size_angstrom
            in_src = ""
        if in_a is None and not em:
            from tmfast.io.mrc import anisotropic_voxel_size

            aniso = anisotropic_voxel_size(input_map)
            if aniso is not None:
                raise ConfigError(
                    f"{input_map}: the header voxel size is anisotropic "
                    f"({', '.join(_fmt(v) for v in aniso)} Å for x, y, z); a "
                    "template needs cubic voxels: resample the map to cubic voxels "
                    "first"
                )
        if in_a is None:
            raise ConfigError(
                f"{input_map}: "
                + (
                    "EM files hold no voxel size"
                    if em
                    else "the header voxel size is 0 (unset)"
                )
                + "; pass --input-voxel-size-angstrom"
            )
        template = template_from_map(
            volume,
            in_a,
            out_a,
            box_size=box_size,
            lowpass_resolution_a=low_pass,
            invert=invert,
            mirror=mirror,
            center=center,
            allow_upsampling=allow_upsampling,
            input_voxel_source=in_src,
        )
        source = f"map {volume.shape} at {in_a:.4g} Å"
    write_volume(output_file, template, out_a, overwrite=overwrite)
    typer.echo(
        f"{input_map} ({source}) -> {output_file}: box {template.shape[0]}, "
        f"{_fmt(out_a)} Å"
    )


class Units(enum.StrEnum):
    """Length unit of radii and sigma."""

    px = "px"
    angstrom = "angstrom"


def _check_mask_fits(box_size: int, radius_px: float, sigma_px: float) -> None:
    """Refuse a mask cut by the box; warn when only its soft edge is cut.

    A radius beyond the half box makes the mask the box itself (``-b 24 -r 30``
    is all ones), which normalises nothing; pytom-match-pick writes such masks
    silently. A Gaussian edge cut at the box face is common and harmless.
    """
    half = box_size / 2.0
    if radius_px > half:
        raise ConfigError(
            f"--radius {radius_px:g} voxels is larger than half the box "
            f"({box_size} voxels / 2 = {half:g}): the mask would fill the box; use "
            f"--box-size {math.ceil(2 * (radius_px + 3 * sigma_px)) + 2} or a "
            "smaller radius (radii are in voxels unless --units angstrom)"
        )
    if radius_px + 3.0 * sigma_px > half:
        logger.warning(
            "radius %g + 3 x sigma %g voxels exceeds half the box (%g): the soft "
            "edge is cut at the box faces",
            radius_px,
            sigma_px,
            half,
        )


def create_mask(
    output_file: Path | None = typer.Option(
        None,
        "-o",
        "--output-file",
        help="Output MRC (default: mask_b{box}px_r{radius}px.mrc).",
        rich_help_panel=_IO,
    ),
    template: Path | None = typer.Option(
        None,
        "--template",
        help="Template MRC: box and voxel size from it; without --radius the mask "
        "follows its shape (threshold, dilate, soften).",
        rich_help_panel=_IO,
    ),
    box_size: int | None = typer.Option(
        None, "-b", "--box-size", help="Cubic box in voxels.", rich_help_panel=_IO
    ),
    voxel_size: float | None = typer.Option(
        None,
        "--voxel-size",
        "--voxel-size-angstrom",
        help="Voxel size in Å for the header (and Å units) (default: template's, "
        "else 1).",
        rich_help_panel=_IO,
    ),
    radius: float | None = typer.Option(
        None,
        "-r",
        "--radius",
        help="Sphere radius (x radius of an ellipsoid).",
        rich_help_panel=_SHAPE,
    ),
    radius_minor1: float | None = typer.Option(
        None, "--radius-minor1", help="Ellipsoid y radius.", rich_help_panel=_SHAPE
    ),
    radius_minor2: float | None = typer.Option(
        None, "--radius-minor2", help="Ellipsoid z radius.", rich_help_panel=_SHAPE
    ),
    sigma: float = typer.Option(
        0.0,
        "-s",
        "--sigma",
        help="Gaussian edge sigma (cut at 3 sigma); 0 = hard edge.",
        rich_help_panel=_SHAPE,
    ),
    units: Units = typer.Option(
        Units.px,
        "--units",
        help="Unit of --radius*, --sigma and --dilation.",
        rich_help_panel=_SHAPE,
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Template mask: density threshold (template minus its median) "
        "(default: --threshold-fraction x max).",
        rich_help_panel=_SHAPE,
    ),
    threshold_fraction: float = typer.Option(
        0.1, "--threshold-fraction", help="Template mask: fraction of the maximum."
    ),
    dilation: float = typer.Option(
        2.0, "--dilation", help="Template mask: dilation radius (rounded to voxels)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output."),
) -> None:
    """Make a spherical, ellipsoidal or template-shaped mask with a soft edge."""
    from tmfast._fileio import check_writable, make_folder
    from tmfast.io.mrc import read_volume, write_volume
    from tmfast.templates.masks import ellipsoid_mask, mask_from_template

    _check_box_option(box_size)

    tmpl = None
    vox = voxel_size
    if template is not None:
        import numpy as np

        from tmfast.templates.em import is_em_file, read_em_volume

        if template.is_file() and is_em_file(template):
            tmpl, tmpl_a = read_em_volume(template), 0.0  # EM: give --voxel-size
        else:
            tmpl, tmpl_a = read_volume(template, require_voxel_size=False)
        if len(set(tmpl.shape)) != 1:
            raise ConfigError(f"{template}: template shape {tmpl.shape} is not cubic")
        if not np.all(np.isfinite(tmpl)):
            raise ConfigError(
                f"{template}: {int(np.count_nonzero(~np.isfinite(tmpl)))} of "
                f"{tmpl.size} voxels are NaN or infinite; fix the template first"
            )
        if box_size is not None and box_size != tmpl.shape[0]:
            raise ConfigError(
                f"--box-size {box_size} differs from the template's {tmpl.shape[0]}; "
                "drop --box-size"
            )
        box_size = tmpl.shape[0]
        if vox is None and tmpl_a > 0:
            vox = tmpl_a
    if vox is None:
        if units is Units.angstrom:
            raise ConfigError(
                "--units angstrom needs the voxel size: "
                + (
                    f"{template} holds none in its header; "
                    if template is not None
                    else ""
                )
                + "pass --voxel-size (Å)"
            )
        vox = 1.0
    if not (vox > 0 and math.isfinite(vox)):
        raise ConfigError(f"--voxel-size {vox}: must be a positive number of Å")
    scale = 1.0 / vox if units is Units.angstrom else 1.0

    if radius is None:
        if tmpl is None:
            raise ConfigError(
                "create-mask needs --radius, or --template for a shaped mask"
            )
        if radius_minor1 is not None or radius_minor2 is not None:
            raise ConfigError("--radius-minor1/2 need --radius")
        mask = mask_from_template(
            tmpl,
            threshold=threshold,
            threshold_fraction=threshold_fraction,
            dilation_px=round(dilation * scale),
            sigma_px=sigma * scale,
        )
        default_name = f"mask_{_stem(template)}.mrc" if template else "mask.mrc"
    else:
        if box_size is None:
            raise ConfigError("create-mask needs --box-size (or --template)")
        if (radius_minor1 is None) != (radius_minor2 is None):
            raise ConfigError(
                "give both --radius-minor1 and --radius-minor2, or neither"
            )
        rx = radius
        ry = radius if radius_minor1 is None else radius_minor1
        rz = radius if radius_minor2 is None else radius_minor2
        _check_mask_fits(box_size, max(rx, ry, rz) * scale, sigma * scale)
        mask = ellipsoid_mask(
            box_size, (rz * scale, ry * scale, rx * scale), sigma_px=sigma * scale
        )
        default_name = f"mask_b{box_size}px_r{_fmt(rx * scale)}px.mrc"
    if output_file is None:
        output_file = Path(default_name)
    check_writable(output_file, overwrite=overwrite)
    make_folder(output_file.parent, "its folder", output_file)
    write_volume(output_file, mask, vox, overwrite=overwrite)
    typer.echo(
        f"-> {output_file}: box {mask.shape[0]}, {_fmt(vox)} Å, "
        f"sum {float(mask.sum()):.1f} voxels"
    )


def slab_mask(
    input_tomogram: Path = typer.Option(
        ..., "-i", "--input", "--tomogram", help="Tomogram MRC.", rich_help_panel=_IO
    ),
    output_file: Path | None = typer.Option(
        None,
        "-o",
        "--output-file",
        help="Output 0/1 int8 MRC (default: {stem}_slab_mask.mrc).",
        rich_help_panel=_IO,
    ),
    margin: float = typer.Option(
        0.0,
        "--margin",
        help="Widen the slab by this many voxels above and below (negative shrinks).",
    ),
    bin_factor: int | None = typer.Option(
        None, "--bin-factor", help="Binning before analysis (default: size/256)."
    ),
    box_z: int = typer.Option(5, "--box-z", help="Energy box along z (binned px)."),
    box_xy: int = typer.Option(15, "--box-xy", help="Energy box in x, y (binned px)."),
    min_contrast: float = typer.Option(
        1.5, "--min-contrast", help="Energy ratio inside/outside to accept a boundary."
    ),
    voxel_size_angstrom: float | None = typer.Option(
        None,
        "--voxel-size-angstrom",
        help="Header voxel size of the mask (default: the tomogram's).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output."),
) -> None:
    """Lamella mask: fit the slab's top and bottom planes; usable as --tomogram-mask."""
    from tmfast._fileio import check_writable, make_folder
    from tmfast.io.mrc import read_volume, write_volume
    from tmfast.templates.slab import SlabFit
    from tmfast.templates.slab import slab_mask as make_slab_mask

    if voxel_size_angstrom is not None and not (
        voxel_size_angstrom > 0 and math.isfinite(voxel_size_angstrom)
    ):
        raise ConfigError(
            f"--voxel-size-angstrom {voxel_size_angstrom:g}: must be a positive "
            "number of Å (leave it out to keep the tomogram's)"
        )
    if output_file is None:
        output_file = Path(f"{_stem(input_tomogram)}_slab_mask.mrc")
    check_writable(output_file, overwrite=overwrite)
    make_folder(output_file.parent, "its folder", output_file)
    tomo, tomo_a = read_volume(input_tomogram, require_voxel_size=False)
    mask, fit = make_slab_mask(
        tomo,
        margin_px=margin,
        bin_factor=bin_factor,
        box_z=box_z,
        box_xy=box_xy,
        min_contrast=min_contrast,
    )
    vox = voxel_size_angstrom if voxel_size_angstrom is not None else tomo_a
    if not vox > 0:
        logger.warning("%s: no voxel size in the header; writing 1.0 Å", input_tomogram)
        vox = 1.0
    write_volume(output_file, mask, vox, overwrite=overwrite)
    seen = ", ".join(
        f"{name} {'fitted' if ok else 'not found (volume face)'}"
        for name, ok in (("top", fit.top_observed), ("bottom", fit.bottom_observed))
    )
    typer.echo(
        f"{input_tomogram} -> {output_file}: thickness {fit.thickness_px:.1f} voxels "
        f"({fit.thickness_px * vox:.0f} Å), tilt top "
        f"{SlabFit.tilt_deg(fit.top_abc):.2f} deg, bottom "
        f"{SlabFit.tilt_deg(fit.bottom_abc):.2f} deg; {seen}; "
        f"{100 * float(mask.mean()):.1f}% of voxels"
    )


def register(app: typer.Typer) -> None:
    """Add ``create-template``, ``create-mask`` and ``slab-mask`` to ``app``."""
    app.command("create-template")(create_template)
    app.command("create-mask")(create_mask)
    app.command("slab-mask")(slab_mask)
