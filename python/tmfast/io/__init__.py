"""Readers and writers: files <-> arrays and tables, no maths.

* :mod:`tmfast.io.mrc` - MRC volumes as ``(z, y, x)`` float32 arrays with the voxel
  size in Å (:func:`read_volume`, :func:`write_volume`, :func:`read_header`);
* :mod:`tmfast.io.star` - RELION STAR files as ``{block: {label: column}}``
  (:func:`read_star`, :func:`write_star`, :func:`star_to_string`);
* :mod:`tmfast.io.imod` - IMOD scattered-point models (:func:`write_imod_points`);
* :mod:`tmfast.io.em` - EM volume headers (:func:`~tmfast.io.em.read_em_header`);
* :mod:`tmfast.io.tilts` - tilt-angle, defocus and dose text files.

Every writer is atomic (temporary name, then rename) and refuses to replace an
existing file unless ``overwrite=True``.
"""

from __future__ import annotations

from tmfast.io.imod import write_imod_points
from tmfast.io.mrc import read_header, read_volume, write_volume
from tmfast.io.star import StarBlocks, read_star, star_to_string, write_star
from tmfast.io.tilts import read_defocus, read_dose, read_tilt_angles

__all__ = [
    "StarBlocks",
    "read_defocus",
    "read_dose",
    "read_header",
    "read_star",
    "read_tilt_angles",
    "read_volume",
    "star_to_string",
    "write_imod_points",
    "write_star",
    "write_volume",
]
