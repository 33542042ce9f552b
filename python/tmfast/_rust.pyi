# Type stubs of the compiled extension tmfast._rust. Call the typed wrappers in
# tmfast.geometry, tmfast.extraction and tmfast.io instead of these directly.
# Each area keeps its own section; edit only your section.
import numpy as np
import numpy.typing as npt

__version__: str

# --- angles and Euler conventions (rust/src/py/angles.rs) ---------------------------

# --- end angles ---------------------------------------------------------------------

# --- peaks (rust/src/py/peaks.rs) ---------------------------------------------------

# --- end peaks ----------------------------------------------------------------------

# --- STAR and IMOD writers (rust/src/py/formats.rs) ----------------------------------

# --- end formats --------------------------------------------------------------------
