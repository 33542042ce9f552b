"""Array type aliases used across tmfast.

Volumes are C-ordered ``(z, y, x)`` float32 arrays unless stated otherwise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["AngleArray", "IntArray", "RotationMatrices", "Volume"]

#: A ``(z, y, x)`` float32 volume.
Volume = npt.NDArray[np.float32]
#: ``(N, 3)`` float64 ZXZ Euler angles ``(phi, theta, psi)`` in radians.
AngleArray = npt.NDArray[np.float64]
#: ``(N, 3, 3)`` rotation matrices acting on ``(x, y, z)`` column vectors.
RotationMatrices = npt.NDArray[np.float64]
#: Integer index arrays.
IntArray = npt.NDArray[np.int64]
