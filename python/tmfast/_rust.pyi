# Type stubs of the compiled extension tmfast._rust. Call the typed wrappers in
# tmfast.geometry, tmfast.extraction and tmfast.io instead of these directly.
# Each area keeps its own section; edit only your section.
import numpy as np
import numpy.typing as npt

__version__: str

# --- angles and Euler conventions (rust/src/py/angles.rs) ---------------------------
def healpix_pix2ang(
    nside: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def nside_for_step(step_deg: float) -> int: ...
def pytom_angle_set(
    step_deg: float, *, symmetry_n: int = 1
) -> npt.NDArray[np.float64]: ...
def crowther_step_deg(
    particle_diameter_a: float, voxel_size_a: float, low_pass_a: float | None = None
) -> float: ...
def read_angle_file(path: str) -> npt.NDArray[np.float64]: ...
def zxz_to_matrices(
    angles_zxz_rad: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]: ...
def matrices_to_zxz(matrices: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def zxz_to_relion_deg(
    angles_zxz_rad: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]: ...
def relion_deg_to_zxz(
    angles_relion_deg: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]: ...
def symmetry_order(symmetry: str) -> int: ...
def symmetry_group_zxz(symmetry: str) -> npt.NDArray[np.float64]: ...
def reduce_by_symmetry(
    angles_zxz_rad: npt.NDArray[np.float64],
    symmetry: str,
    *,
    complete_cyclic: bool = False,
) -> npt.NDArray[np.float64]: ...
def covering_radius(
    angles_zxz_rad: npt.NDArray[np.float64], *, n_samples: int, seed: int
) -> tuple[float, npt.NDArray[np.float64]]: ...
def nearest_distances(
    set_zxz_rad: npt.NDArray[np.float64], query_zxz_rad: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]: ...
def optimal_angle_set(
    step_deg: float, *, n_samples: int
) -> tuple[npt.NDArray[np.float64], float, float]: ...
def optimal_for_radius(
    radius_rad: float, *, n_samples: int, max_len: int
) -> tuple[npt.NDArray[np.float64], float] | None: ...
def refined_sets() -> list[tuple[float, float, npt.NDArray[np.float64]]]: ...

# --- end angles ---------------------------------------------------------------------

# --- peaks (rust/src/py/peaks.rs) ---------------------------------------------------
def find_peaks(
    scores: npt.NDArray[np.float32],
    *,
    n_peaks: int,
    exclusion_radius_vox: float,
    cutoff: float | None = None,
    mask: npt.NDArray[np.float32] | None = None,
    mask_u8: npt.NDArray[np.uint8] | None = None,
    mask_i8: npt.NDArray[np.int8] | None = None,
    angles_f32: npt.NDArray[np.float32] | None = None,
    angles_i32: npt.NDArray[np.int32] | None = None,
    border_vox: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...

# --- end peaks ----------------------------------------------------------------------

# --- STAR and IMOD writers (rust/src/py/formats.rs) ----------------------------------
_StarBlock = tuple[
    str,
    bool,
    list[
        tuple[
            str,
            npt.NDArray[np.float32]
            | npt.NDArray[np.float64]
            | npt.NDArray[np.int64]
            | npt.NDArray[np.uint32]
            | list[str]
            | int
            | float
            | str,
        ]
    ],
]

def star_to_string(blocks: list[_StarBlock]) -> str: ...
def write_star(path: str, blocks: list[_StarBlock]) -> None: ...
def read_star(
    path: str, *, as_text: bool = False
) -> list[
    tuple[
        str,
        bool,
        list[
            tuple[
                str,
                npt.NDArray[np.int64]
                | npt.NDArray[np.float64]
                | npt.NDArray[np.uint32],
            ]
        ],
    ]
]: ...
def write_imod(
    path: str,
    objects: list[
        tuple[
            str,
            tuple[float, float, float],
            int,
            npt.NDArray[np.float32],
            npt.NDArray[np.float32] | None,
        ]
    ],
    *,
    name: str,
    dims_xyz: tuple[int, int, int],
    pixel_size_a: float,
) -> None: ...

# --- end formats --------------------------------------------------------------------

# --- kernels of the CPU matching backend (rust/src/py/kernels.rs) ----------------------
def fold_rotations(
    scores: npt.NDArray[np.float32],
    angles: npt.NDArray[np.int32] | npt.NDArray[np.uint16],
    score_sum: npt.NDArray[np.float64] | npt.NDArray[np.float32] | None,
    score_sq_sum: npt.NDArray[np.float64] | npt.NDArray[np.float32] | None,
    corr: npt.NDArray[np.float32],
    *,
    first_index: int,
    noise_scores: npt.NDArray[np.float32] | None = None,
    noise_corr: npt.NDArray[np.float32] | None = None,
    inverse_norm: npt.NDArray[np.float32] | None = None,
    local_sum: npt.NDArray[np.float32] | None = None,
    local_sq_sum: npt.NDArray[np.float32] | None = None,
    mask_sums: list[float] | None = None,
    denominator: npt.NDArray[np.float32] | None = None,
    roi: npt.NDArray[np.uint8] | None = None,
    floor_rel: float = 1e-4,
    row_len: int = 0,
    row_stride: int = 0,
    half_spectrum: bool = False,
) -> list[tuple[float, float]]: ...
def wide_simd() -> bool: ...
def rotate_bspline_many(
    coeffs: npt.NDArray[np.float32],
    matrix: npt.NDArray[np.float64],
    out: npt.NDArray[np.float32],
) -> None: ...
def conj_multiply(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> None: ...
def zero_outside_corner(buf: npt.NDArray[np.float32], n: int) -> None: ...
def normalise_under_mask(
    values: npt.NDArray[np.float32],
    masks: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None: ...
def conj_multiply_pair(
    a: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    b: npt.NDArray[np.float32],
    c: npt.NDArray[np.float32],
) -> None: ...
def local_denominators(
    local_sum: npt.NDArray[np.float32],
    local_sq_sum: npt.NDArray[np.float32],
    mask_sums: list[float],
    *,
    floor_rel: float = 1e-4,
    row_len: int,
    row_stride: int,
    half_spectrum: bool = False,
) -> None: ...
def fold_noise_max(
    noise_scores: npt.NDArray[np.float32],
    noise_corr: npt.NDArray[np.float32],
    *,
    inverse_norm: npt.NDArray[np.float32] | None = None,
    local_sum: npt.NDArray[np.float32] | None = None,
    local_sq_sum: npt.NDArray[np.float32] | None = None,
    mask_sums: list[float] | None = None,
    denominator: npt.NDArray[np.float32] | None = None,
    floor_rel: float = 1e-4,
    row_len: int = 0,
    row_stride: int = 0,
    half_spectrum: bool = False,
) -> None: ...

# --- end kernels --------------------------------------------------------------------
