"""Templates and masks: templates from maps and atomic models, masks, lamella masks."""

from __future__ import annotations

from tmfast.templates.maps import (
    center_of_mass_zyx,
    fourier_resample,
    lowpass_weights_rfft,
    pad_to_cube,
    template_from_map,
)
from tmfast.templates.masks import (
    ellipsoid_mask,
    mask_from_template,
    soften_mask,
    sphere_mask,
)
from tmfast.templates.models import AtomModel, read_atom_model, template_from_model
from tmfast.templates.slab import SlabFit, fill_slab, fit_slab, slab_mask

__all__ = [
    "AtomModel",
    "SlabFit",
    "center_of_mass_zyx",
    "ellipsoid_mask",
    "fill_slab",
    "fit_slab",
    "fourier_resample",
    "lowpass_weights_rfft",
    "mask_from_template",
    "pad_to_cube",
    "read_atom_model",
    "slab_mask",
    "soften_mask",
    "sphere_mask",
    "template_from_map",
    "template_from_model",
]
