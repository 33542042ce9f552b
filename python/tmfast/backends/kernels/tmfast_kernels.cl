/* tmfast template-matching kernels: ONE source for OpenCL (pyopencl) and CUDA
 * (pycuda / nvcc). The host prepends tmfast_portability.h.
 *
 * Conventions (docs/conventions.md): arrays are C-ordered (z, y, x) float32; a box of
 * n voxels has its centre at n / 2; matrices M are row-major 3x3 float32 acting on
 * (x, y, z) column vectors, and rotated(r) = T(M^T (r - c) + c).
 *
 * Buffers holding a batch of nb items are contiguous: item b starts at b * size.
 * Complex half spectra are float2 (re, im) of shape (Z, Y, X / 2 + 1).
 */

/* ----------------------------------------------------------------------------- */
/* Cubic B-spline evaluation of prefiltered coefficients, zero outside the box.    */
/* Matches scipy.ndimage.map_coordinates(order=3, mode="grid-constant",            */
/* prefilter=False): coefficients beyond the array count as 0.                     */
/* ----------------------------------------------------------------------------- */
DEVICE_FN void bspline_weights(float t, float *w)
{
    const float t2 = t * t;
    const float t3 = t2 * t;
    const float u = 1.0f - t;
    w[0] = u * u * u * (1.0f / 6.0f);
    w[1] = (3.0f * t3 - 6.0f * t2 + 4.0f) * (1.0f / 6.0f);
    w[2] = (-3.0f * t3 + 3.0f * t2 + 3.0f * t + 1.0f) * (1.0f / 6.0f);
    w[3] = t3 * (1.0f / 6.0f);
}

DEVICE_FN float bspline3_sample(GLOBAL const float *coef, const int n,
                                const float sx, const float sy, const float sz)
{
    const float hi = (float)n + 1.0f;
    if (sx <= -2.0f || sy <= -2.0f || sz <= -2.0f || sx >= hi || sy >= hi || sz >= hi) {
        return 0.0f;
    }
    const float fx = FLOORF(sx), fy = FLOORF(sy), fz = FLOORF(sz);
    const int ix = (int)fx - 1, iy = (int)fy - 1, iz = (int)fz - 1;
    float wx[4], wy[4], wz[4];
    bspline_weights(sx - fx, wx);
    bspline_weights(sy - fy, wy);
    bspline_weights(sz - fz, wz);
    float acc = 0.0f;
    for (int k = 0; k < 4; ++k) {
        const int zz = iz + k;
        if (zz < 0 || zz >= n) continue;
        float acc_y = 0.0f;
        for (int j = 0; j < 4; ++j) {
            const int yy = iy + j;
            if (yy < 0 || yy >= n) continue;
            GLOBAL const float *row = coef + ((i64)zz * n + yy) * n;
            float acc_x = 0.0f;
            for (int i = 0; i < 4; ++i) {
                const int xx = ix + i;
                if (xx < 0 || xx >= n) continue;
                acc_x += wx[i] * row[xx];
            }
            acc_y += wy[j] * acc_x;
        }
        acc += wz[k] * acc_y;
    }
    return acc;
}

/* Batch item b, voxel offset v (returned) and (z, y, x) of flat index gid over nb
 * boxes of n^3 voxels. */
DEVICE_FN i64 box_voxel(const i64 gid, const int n, int *b, int *z, int *y, int *x)
{
    const i64 n3 = (i64)n * n * n;
    *b = (int)(gid / n3);
    const i64 v = gid - (i64)(*b) * n3;
    *x = (int)(v % n);
    *y = (int)((v / n) % n);
    *z = (int)(v / ((i64)n * n));
    return v;
}

/* out[b] = coefficients rotated by mats[b]; out is (nb, n, n, n). clamp01 != 0
 * clips to [0, 1]: a rotated mask must stay a weight (the cubic B-spline overshoots
 * at a binary mask's edge, to -0.26 .. 1.22, and the FLCF then exceeds 1). */
KERNEL void rotate_bspline(GLOBAL float *out, GLOBAL const float *coef,
                           GLOBAL const float *mats, const int n, const int nb,
                           const int clamp01)
{
    const i64 gid = GID0;
    const i64 n3 = (i64)n * n * n;
    if (gid >= n3 * nb) return;
    int b, x, y, z;
    box_voxel(gid, n, &b, &z, &y, &x);
    GLOBAL const float *m = mats + 9 * b;
    const float c = (float)(n / 2);
    const float rx = (float)x - c, ry = (float)y - c, rz = (float)z - c;
    /* source = M^T r + c, (M^T)_ij = M_ji */
    const float sx = m[0] * rx + m[3] * ry + m[6] * rz + c;
    const float sy = m[1] * rx + m[4] * ry + m[7] * rz + c;
    const float sz = m[2] * rx + m[5] * ry + m[8] * rz + c;
    const float v = bspline3_sample(coef, n, sx, sy, sz);
    out[gid] = clamp01 ? fmin(fmax(v, 0.0f), 1.0f) : v;
}

/* spec[b, i] *= w[i] for a batch of nb half spectra of n_spec elements; one work
 * item per i reads w[i] once for the whole batch. */
KERNEL void apply_weight(GLOBAL float2 *spec, GLOBAL const float *w, const i64 n_spec,
                         const int nb)
{
    const i64 i = GID0;
    if (i >= n_spec) return;
    const float s = w[i];
    for (int b = 0; b < nb; ++b) {
        const i64 j = (i64)b * n_spec + i;
        const float2 v = spec[j];
        spec[j] = MAKE_FLOAT2(v.x * s, v.y * s);
    }
}

/* ----------------------------------------------------------------------------- */
/* Mask-weighted moments of each box: partial sums per (box, chunk) work group.    */
/* partial[3 g + 0] = sum t m, [1] = sum t^2 m, [2] = sum m; g = b * chunks + ch.  */
/* ----------------------------------------------------------------------------- */
KERNEL void box_moments(GLOBAL const float *t, GLOBAL const float *m, const int mask_batched,
                        const i64 n3, const int chunks, GLOBAL float *partial)
{
    LOCAL float s_tm[TMFAST_REDUCE_WG];
    LOCAL float s_ttm[TMFAST_REDUCE_WG];
    LOCAL float s_m[TMFAST_REDUCE_WG];
    const int g = GROUP0;
    const int lid = LID0;
    const int b = g / chunks;
    const int ch = g - b * chunks;
    const i64 chunk_len = (n3 + chunks - 1) / chunks;
    const i64 start = (i64)ch * chunk_len;
    const i64 stop = (start + chunk_len < n3) ? start + chunk_len : n3;
    GLOBAL const float *tb = t + (i64)b * n3;
    GLOBAL const float *mb = m + (mask_batched ? (i64)b * n3 : (i64)0);
    float a_tm = 0.0f, a_ttm = 0.0f, a_m = 0.0f;
    for (i64 i = start + lid; i < stop; i += TMFAST_REDUCE_WG) {
        const float tv = tb[i];
        const float mv = mb[i];
        const float tm = tv * mv;
        a_tm += tm;
        a_ttm += tm * tv;
        a_m += mv;
    }
    s_tm[lid] = a_tm;
    s_ttm[lid] = a_ttm;
    s_m[lid] = a_m;
    BARRIER;
    for (int off = TMFAST_REDUCE_WG / 2; off > 0; off >>= 1) {
        if (lid < off) {
            s_tm[lid] += s_tm[lid + off];
            s_ttm[lid] += s_ttm[lid + off];
            s_m[lid] += s_m[lid + off];
        }
        BARRIER;
    }
    if (lid == 0) {
        partial[3 * g + 0] = s_tm[0];
        partial[3 * g + 1] = s_ttm[0];
        partial[3 * g + 2] = s_m[0];
    }
}

/* stats[4 b] = (mean, 1 / std, N_M, 0) under the mask of box b. */
KERNEL void finish_moments(GLOBAL const float *partial, const int chunks, const int nb,
                           GLOBAL float *stats)
{
    const i64 b = GID0;
    if (b >= nb) return;
    float a_tm = 0.0f, a_ttm = 0.0f, a_m = 0.0f;
    for (int c = 0; c < chunks; ++c) {
        const i64 g = b * chunks + c;
        a_tm += partial[3 * g + 0];
        a_ttm += partial[3 * g + 1];
        a_m += partial[3 * g + 2];
    }
    const float mean = a_m > 0.0f ? a_tm / a_m : 0.0f;
    const float var = a_m > 0.0f ? a_ttm / a_m - mean * mean : 0.0f;
    stats[4 * b + 0] = mean;
    stats[4 * b + 1] = var > 0.0f ? 1.0f / SQRTF(var) : 0.0f;
    stats[4 * b + 2] = a_m;
    stats[4 * b + 3] = 0.0f;
}

/* Destination index of box voxel (z, y, x) pasted with its centre at index 0: x is
 * always wrapped around index 0 of an nx-long axis; z and y too when wrap_zy is 1,
 * otherwise they stay box-local (nz = ny = n: the compact rows of a pruned FFT). */
DEVICE_FN i64 paste_index(const int z, const int y, const int x, const int n,
                          const int nz, const int ny, const int nx, const int wrap_zy)
{
    const int c = n / 2;
    const int czy = wrap_zy ? c : 0;
    int zz = z - czy, yy = y - czy, xx = x - c;
    if (zz < 0) zz += nz;
    if (yy < 0) yy += ny;
    if (xx < 0) xx += nx;
    return ((i64)zz * ny + yy) * nx + xx;
}

/* pad[b] <- M (t[b] - mean_b) / std_b pasted circularly with the box centre at 0.
 * Only the n^3 box positions are written; the rest of pad stays zero. */
KERNEL void normalise_paste(GLOBAL float *pad, GLOBAL const float *t, GLOBAL const float *m,
                            const int mask_batched, GLOBAL const float *stats, const int n,
                            const int nz, const int ny, const int nx, const int wrap_zy,
                            const int nb)
{
    const i64 gid = GID0;
    const i64 n3 = (i64)n * n * n;
    if (gid >= n3 * nb) return;
    int b, x, y, z;
    const i64 v = box_voxel(gid, n, &b, &z, &y, &x);
    const float mv = m[(mask_batched ? (i64)b * n3 : (i64)0) + v];
    const float val = (t[gid] - stats[4 * b]) * stats[4 * b + 1] * mv;
    pad[(i64)b * nz * ny * nx + paste_index(z, y, x, n, nz, ny, nx, wrap_zy)] = val;
}

/* pad[b] <- box[b] (or box for every b when box_batched is 0), pasted like above. */
KERNEL void paste_box(GLOBAL float *pad, GLOBAL const float *box, const int box_batched,
                      const int n, const int nz, const int ny, const int nx,
                      const int wrap_zy, const int nb)
{
    const i64 gid = GID0;
    const i64 n3 = (i64)n * n * n;
    if (gid >= n3 * nb) return;
    int b, x, y, z;
    const i64 v = box_voxel(gid, n, &b, &z, &y, &x);
    pad[(i64)b * nz * ny * nx + paste_index(z, y, x, n, nz, ny, nx, wrap_zy)] =
        box[(box_batched ? (i64)b * n3 : (i64)0) + v];
}

/* Pruned forward FFT step: dst[b, i, (j - n/2) mod n_dst, k] = src[b, i, j, k] moves
 * the n box-local rows of one axis to their circular places on the full axis. dst
 * positions not written stay zero from the allocation. */
KERNEL void scatter_shift(GLOBAL float2 *dst, GLOBAL const float2 *src, const int outer,
                          const int n, const int n_dst, const i64 inner, const int nb)
{
    const i64 gid = GID0;
    const i64 per_b = (i64)outer * n * inner;
    if (gid >= per_b * nb) return;
    const int b = (int)(gid / per_b);
    i64 r = gid - (i64)b * per_b;
    const i64 k = r % inner;
    r /= inner;
    const int j = (int)(r % n);
    const int i = (int)(r / n);
    int jj = j - n / 2;
    if (jj < 0) jj += n_dst;
    dst[(((i64)b * outer + i) * n_dst + jj) * inner + k] = src[gid];
}

/* ----------------------------------------------------------------------------- */
/* Correlation spectra: spec[b] <- A * conj(spec[b]) so that the inverse transform  */
/* gives sum_r V(x + r) P_b(r) (template centred on voxel x).                      */
/* ----------------------------------------------------------------------------- */
DEVICE_FN float2 mul_conj(const float2 a, const float2 s)
{
    return MAKE_FLOAT2(a.x * s.x + a.y * s.y, a.y * s.x - a.x * s.y);
}

/* One work item per spectrum element i: A[i] is read once for the whole batch. */
KERNEL void conj_mul(GLOBAL float2 *spec, GLOBAL const float2 *a, const i64 n_spec,
                     const int nb)
{
    const i64 i = GID0;
    if (i >= n_spec) return;
    const float2 av = a[i];
    for (int b = 0; b < nb; ++b) {
        const i64 j = (i64)b * n_spec + i;
        spec[j] = mul_conj(av, spec[j]);
    }
}

/* ----------------------------------------------------------------------------- */
/* Fused z stage of the pruned correlation (replaces scatter to z, the forward FFT  */
/* along z, conj_mul and the z pass of the inverse 3-D FFT): for each (ky, kx)      */
/* column, the n y-transformed template planes go to their circular z places       */
/* (j - n/2) mod nz, the zero-padded column is transformed along z, multiplied as  */
/* in conj_mul (A conj(S)) and transformed back with 1/nz, all in local memory.    */
/* What remains of the inverse is a 2-D C2R over (y, x) with 1/(ny nx).            */
/* ----------------------------------------------------------------------------- */
DEVICE_FN float2 cmul(const float2 a, const float2 b)
{
    return MAKE_FLOAT2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

/* Forward DFTs of radix 2, 4 and 8 without multiplications by table values
 * (y_p = sum_q v_q exp(-2 pi i p q / R)); radices 3, 5 and 7 use the table. */
DEVICE_FN float2 cadd(const float2 a, const float2 b) { return MAKE_FLOAT2(a.x + b.x, a.y + b.y); }
DEVICE_FN float2 csub(const float2 a, const float2 b) { return MAKE_FLOAT2(a.x - b.x, a.y - b.y); }
/* -i z and +i z */
DEVICE_FN float2 cmi(const float2 z) { return MAKE_FLOAT2(z.y, -z.x); }
DEVICE_FN float2 cpi(const float2 z) { return MAKE_FLOAT2(-z.y, z.x); }

DEVICE_FN void dft2(float2 *v)
{
    const float2 a = v[0];
    v[0] = cadd(a, v[1]);
    v[1] = csub(a, v[1]);
}

DEVICE_FN void dft4(float2 *v0, float2 *v1, float2 *v2, float2 *v3)
{
    const float2 t0 = cadd(*v0, *v2), t1 = csub(*v0, *v2);
    const float2 t2 = cadd(*v1, *v3), t3 = csub(*v1, *v3);
    *v0 = cadd(t0, t2);
    *v2 = csub(t0, t2);
    *v1 = cadd(t1, cmi(t3));
    *v3 = cadd(t1, cpi(t3));
}

DEVICE_FN void dft8(float2 *v)
{
    const float h = 0.70710678118654752f;
    float2 e0 = v[0], e1 = v[2], e2 = v[4], e3 = v[6];
    float2 o0 = v[1], o1 = v[3], o2 = v[5], o3 = v[7];
    dft4(&e0, &e1, &e2, &e3);
    dft4(&o0, &o1, &o2, &o3);
    /* o_k *= exp(-2 pi i k / 8) */
    o1 = MAKE_FLOAT2(h * (o1.x + o1.y), h * (o1.y - o1.x));
    o2 = cmi(o2);
    o3 = MAKE_FLOAT2(h * (o3.y - o3.x), -h * (o3.x + o3.y));
    v[0] = cadd(e0, o0);
    v[4] = csub(e0, o0);
    v[1] = cadd(e1, o1);
    v[5] = csub(e1, o1);
    v[2] = cadd(e2, o2);
    v[6] = csub(e2, o2);
    v[3] = cadd(e3, o3);
    v[7] = csub(e3, o3);
}

/* y = DFT_R(v) through the table: w_R^{pq} = tw[((p q) mod R) nz / R]. */
#define TMFAST_ZLINE_DFT_TABLE(R, v, tw, dft_step)                                    \
    {                                                                                 \
        float2 y[R];                                                                  \
        for (int p = 0; p < R; ++p) {                                                 \
            float2 acc = v[0];                                                        \
            for (int q = 1; q < R; ++q) {                                             \
                acc = cadd(acc, cmul(v[q], tw[((p * q) % R) * (dft_step)]));          \
            }                                                                         \
            y[p] = acc;                                                               \
        }                                                                             \
        for (int p = 0; p < R; ++p) v[p] = y[p];                                      \
    }
#define TMFAST_ZLINE_DFT_2(v, tw, dft_step) (void)(dft_step); dft2(v);
#define TMFAST_ZLINE_DFT_4(v, tw, dft_step) (void)(dft_step); dft4(&v[0], &v[1], &v[2], &v[3]);
#define TMFAST_ZLINE_DFT_8(v, tw, dft_step) (void)(dft_step); dft8(v);
#define TMFAST_ZLINE_DFT_3(v, tw, dft_step) TMFAST_ZLINE_DFT_TABLE(3, v, tw, dft_step)
#define TMFAST_ZLINE_DFT_5(v, tw, dft_step) TMFAST_ZLINE_DFT_TABLE(5, v, tw, dft_step)
#define TMFAST_ZLINE_DFT_7(v, tw, dft_step) TMFAST_ZLINE_DFT_TABLE(7, v, tw, dft_step)

/* One Stockham autosort pass of radix R over `cols` columns of length nz (column c
 * at c * ld): sub-transforms of length ns become length ns * R. tw[t] =
 * exp(-2 pi i t / nz). One function per radix, so that R is a constant, the loops
 * unroll and v[] stays in registers. */
#define TMFAST_ZLINE_PASS(R)                                                          \
    DEVICE_FN void zline_pass_##R(LOCAL_PTR float2 *dst, LOCAL_PTR const float2 *src, \
                                  GLOBAL const float2 *tw, const int nz, const int ld,\
                                  const int cols, const int ns)                       \
    {                                                                                 \
        const int per_col = nz / R;                                                   \
        const int tw_step = nz / (ns * R);                                            \
        const int dft_step = nz / R;                                                  \
        for (int t = LID0; t < per_col * cols; t += LSIZE0) {                         \
            const int c = t / per_col;                                                \
            const int j = t - c * per_col;                                            \
            const int k = j % ns;                                                     \
            float2 v[R];                                                              \
            for (int q = 0; q < R; ++q) {                                             \
                const float2 x = src[c * ld + j + q * per_col];                       \
                v[q] = (q > 0 && k > 0) ? cmul(x, tw[k * q * tw_step]) : x;           \
            }                                                                         \
            TMFAST_ZLINE_DFT_##R(v, tw, dft_step)                                     \
            const int base = c * ld + (j - k) * R + k;                                \
            for (int p = 0; p < R; ++p) dst[base + p * ns] = v[p];                    \
        }                                                                             \
    }
TMFAST_ZLINE_PASS(2)
TMFAST_ZLINE_PASS(3)
TMFAST_ZLINE_PASS(4)
TMFAST_ZLINE_PASS(5)
TMFAST_ZLINE_PASS(7)
TMFAST_ZLINE_PASS(8)

/* The forward FFT along z of `cols` columns: passes of radices[0 .. n_passes-1]
 * (their product is nz), ping-ponging between the two buffers; returns the one
 * holding the result (natural order). Ends with a barrier. */
DEVICE_FN LOCAL_PTR float2 *zline_fft(LOCAL_PTR float2 *a, LOCAL_PTR float2 *b,
                                      GLOBAL const float2 *tw,
                                      GLOBAL const int *radices, const int n_passes,
                                      const int nz, const int ld, const int cols)
{
    LOCAL_PTR float2 *src = a;
    LOCAL_PTR float2 *dst = b;
    int ns = 1;
    for (int s = 0; s < n_passes; ++s) {
        const int r = radices[s];
        switch (r) {
        case 2: zline_pass_2(dst, src, tw, nz, ld, cols, ns); break;
        case 3: zline_pass_3(dst, src, tw, nz, ld, cols, ns); break;
        case 4: zline_pass_4(dst, src, tw, nz, ld, cols, ns); break;
        case 5: zline_pass_5(dst, src, tw, nz, ld, cols, ns); break;
        case 7: zline_pass_7(dst, src, tw, nz, ld, cols, ns); break;
        default: zline_pass_8(dst, src, tw, nz, ld, cols, ns); break;
        }
        BARRIER;
        ns *= r;
        LOCAL_PTR float2 *tmp = src;
        src = dst;
        dst = tmp;
    }
    return src;
}

/* Geometry of one zline work group: columns kx0 .. kx0 + ncol - 1 of row ky. */
typedef struct {
    int nz, ld, cols, ncol, n_passes;
    i64 plane, col0;
} zline_geom;

DEVICE_FN zline_geom zline_group(const int nz, const int ny, const int nxh,
                                 const int cols, const int n_passes)
{
    zline_geom g;
    const int groups_per_row = (nxh + cols - 1) / cols;
    const int ky = GROUP0 / groups_per_row;
    const int kx0 = (GROUP0 - ky * groups_per_row) * cols;
    g.nz = nz;
    g.ld = nz + 1;
    g.cols = cols;
    g.ncol = (nxh - kx0 < cols) ? nxh - kx0 : cols;
    g.n_passes = n_passes;
    g.plane = (i64)ny * nxh;
    g.col0 = (i64)ky * nxh + kx0;
    return g;
}

/* buf <- the n planes of batch item b at their circular z places, zero elsewhere. */
DEVICE_FN void zline_load(LOCAL_PTR float2 *buf, GLOBAL const float2 *planes,
                          const int b, const int n, const zline_geom g)
{
    for (int t = LID0; t < g.cols * g.ld; t += LSIZE0) {
        buf[t] = MAKE_FLOAT2(0.0f, 0.0f);
    }
    BARRIER;
    for (int t = LID0; t < n * g.cols; t += LSIZE0) {
        const int j = t / g.cols;
        const int c = t - j * g.cols;
        if (c < g.ncol) {
            int zj = j - n / 2;
            if (zj < 0) zj += g.nz;
            buf[c * g.ld + zj] = planes[((i64)b * n + j) * g.plane + g.col0 + c];
        }
    }
    BARRIER;
}

/* out[b] columns <- IFFT_z(A conj(S)) with S the forward transform in res; uses
 * both buffers. The inverse is conj(FFT(conj(.))) / nz. */
DEVICE_FN void zline_finish(LOCAL_PTR float2 *res, LOCAL_PTR float2 *other,
                            GLOBAL const float2 *a, GLOBAL float2 *out, const int b,
                            GLOBAL const float2 *tw, GLOBAL const int *radices,
                            const zline_geom g)
{
    for (int t = LID0; t < g.nz * g.cols; t += LSIZE0) {
        const int kz = t / g.cols;
        const int c = t - kz * g.cols;
        if (c < g.ncol) {
            const float2 p = mul_conj(a[(i64)kz * g.plane + g.col0 + c], res[c * g.ld + kz]);
            res[c * g.ld + kz] = MAKE_FLOAT2(p.x, -p.y);
        }
    }
    BARRIER;
    LOCAL_PTR float2 *u = zline_fft(res, other, tw, radices, g.n_passes, g.nz, g.ld, g.cols);
    const float inv_nz = 1.0f / (float)g.nz;
    for (int t = LID0; t < g.nz * g.cols; t += LSIZE0) {
        const int z = t / g.cols;
        const int c = t - z * g.cols;
        if (c < g.ncol) {
            const float2 v = u[c * g.ld + z];
            out[((i64)b * g.nz + z) * g.plane + g.col0 + c] =
                MAKE_FLOAT2(v.x * inv_nz, -v.y * inv_nz);
        }
    }
    BARRIER;
}

/* out[b, z, ky, kx] for all z of the columns kx0 .. kx0 + cols - 1 of row ky (one
 * work group of TMFAST_REDUCE_WG items each); planes is (nb, n, ny, nxh), a and out
 * (nz, ny, nxh) and (nb, nz, ny, nxh). */
KERNEL void zline_corr(GLOBAL float2 *out, GLOBAL const float2 *planes,
                       GLOBAL const float2 *a, GLOBAL const float2 *tw,
                       GLOBAL const int *radices, const int n_passes, const int n,
                       const int nz, const int ny, const int nxh, const int cols,
                       const int nb)
{
    LOCAL float2 buf0[TMFAST_ZLINE_LMEM];
    LOCAL float2 buf1[TMFAST_ZLINE_LMEM];
    const zline_geom g = zline_group(nz, ny, nxh, cols, n_passes);
    for (int b = 0; b < nb; ++b) {
        zline_load(buf0, planes, b, n, g);
        LOCAL_PTR float2 *res = zline_fft(buf0, buf1, tw, radices, n_passes, nz, g.ld, cols);
        zline_finish(res, (res == buf0) ? buf1 : buf0, a, out, b, tw, radices, g);
    }
}

/* Work items' share of one work group's columns: enough registers to hold them. */
#define TMFAST_ZLINE_KEEP ((TMFAST_ZLINE_LMEM + TMFAST_REDUCE_WG - 1) / TMFAST_REDUCE_WG)

/* The rotated mask's pair: out[b] with a (F(V)) and out2[b] with a2 (F(V^2)) from
 * one forward transform, kept in registers while the first product is inverted. */
KERNEL void zline_corr2(GLOBAL float2 *out, GLOBAL float2 *out2,
                        GLOBAL const float2 *planes, GLOBAL const float2 *a,
                        GLOBAL const float2 *a2, GLOBAL const float2 *tw,
                        GLOBAL const int *radices, const int n_passes, const int n,
                        const int nz, const int ny, const int nxh, const int cols,
                        const int nb)
{
    LOCAL float2 buf0[TMFAST_ZLINE_LMEM];
    LOCAL float2 buf1[TMFAST_ZLINE_LMEM];
    const zline_geom g = zline_group(nz, ny, nxh, cols, n_passes);
    for (int b = 0; b < nb; ++b) {
        zline_load(buf0, planes, b, n, g);
        LOCAL_PTR float2 *res = zline_fft(buf0, buf1, tw, radices, n_passes, nz, g.ld, cols);
        float2 keep[TMFAST_ZLINE_KEEP];
        for (int i = 0; i < TMFAST_ZLINE_KEEP; ++i) {
            const int t = LID0 + i * LSIZE0;
            if (t < nz * cols) {
                const int kz = t / cols;
                keep[i] = res[(t - kz * cols) * g.ld + kz];
            }
        }
        zline_finish(res, (res == buf0) ? buf1 : buf0, a, out, b, tw, radices, g);
        for (int i = 0; i < TMFAST_ZLINE_KEEP; ++i) {
            const int t = LID0 + i * LSIZE0;
            if (t < nz * cols) {
                const int kz = t / cols;
                buf0[(t - kz * cols) * g.ld + kz] = keep[i];
            }
        }
        BARRIER;
        zline_finish(buf0, buf1, a2, out2, b, tw, radices, g);
    }
}

/* For a rotated mask: spec_m2[b] <- F(V^2) conj(spec_m[b]) and
 * spec_m[b] <- F(V) conj(spec_m[b]). spec_m2 may alias fv2 when nb is 1 (each
 * element is read before it is written, by the same work item). */
KERNEL void conj_mul_mask(GLOBAL float2 *spec_m, GLOBAL float2 *spec_m2,
                          GLOBAL const float2 *fv, GLOBAL const float2 *fv2,
                          const i64 n_spec, const int nb)
{
    const i64 i = GID0;
    if (i >= n_spec) return;
    const float2 v1 = fv[i];
    const float2 v2 = fv2[i];
    for (int b = 0; b < nb; ++b) {
        const i64 j = (i64)b * n_spec + i;
        const float2 s = spec_m[j];
        spec_m2[j] = mul_conj(v2, s);
        spec_m[j] = mul_conj(v1, s);
    }
}

/* ----------------------------------------------------------------------------- */
/* Local standard deviation and the fused running-maximum updates.                 */
/* ----------------------------------------------------------------------------- */
DEVICE_FN float local_sigma(const float corr_m, const float corr_m2, const float n_m)
{
    const float mu = corr_m / n_m;
    const float e2 = corr_m2 / n_m;
    const float var = e2 - mu * mu;
    /* The cpu backend's floor: the host standardised the tomogram (unit mean square),
     * and below TMFAST_VAR_REL_FLOOR (E[V^2] + 1) the difference E[V^2] - E[V]^2 is
     * float32 FFT rounding noise, so sigma is 1 there (pytom's absolute 1e-18 gave
     * |FLCF| up to 6 in flat regions). */
    return var > TMFAST_VAR_REL_FLOOR * (e2 + 1.0f) ? SQRTF(var) : 1.0f;
}

/* Spherical mask, once per job: den = N_M sigma_local. */
KERNEL void sigma_denominator(GLOBAL const float *corr_m, GLOBAL const float *corr_m2,
                              const float n_m, const i64 nvox, GLOBAL float *den)
{
    const i64 i = GID0;
    if (i >= nvox) return;
    den[i] = n_m * local_sigma(corr_m[i], corr_m2[i], n_m);
}

/* Score of batch item b at voxel i; raw correlation when use_local is 0 (spherical
 * mask: the division by N_M sigma is deferred to finalize). */
DEVICE_FN float batch_score(GLOBAL const float *cc, GLOBAL const float *cc_m,
                            GLOBAL const float *cc_m2, GLOBAL const float *stats,
                            const int use_local, const i64 j, const int b)
{
    const float v = cc[j];
    if (!use_local) return v;
    const float n_m = stats[4 * b + 2];
    return v / (n_m * local_sigma(cc_m[j], cc_m2[j], n_m));
}

/* Neumaier-compensated float sum: (s, c) with value s + c. */
DEVICE_FN void comp_add(float *s, float *c, const float x)
{
    const float t = *s + x;
    if (FABSF(*s) >= FABSF(x)) {
        *c += (*s - t) + x;
    } else {
        *c += (x - t) + *s;
    }
    *s = t;
}

/* Fold nb correlation maps (rotations first_index ..) into the running maps: maximum
 * and its rotation index (ties keep the smaller index), sum and sum of squares. */
KERNEL void update_scores(GLOBAL const float *cc, GLOBAL const float *cc_m,
                          GLOBAL const float *cc_m2, GLOBAL const float *stats,
                          const int use_local, const i64 nvox, const int nb,
                          const int first_index, GLOBAL float *best, GLOBAL int *best_idx,
                          GLOBAL float *sum_hi, GLOBAL float *sum_lo, GLOBAL float *sq_hi,
                          GLOBAL float *sq_lo)
{
    const i64 i = GID0;
    if (i >= nvox) return;
    float bv = best[i];
    int bi = best_idx[i];
    float s = sum_hi[i], sc = sum_lo[i];
    float q = sq_hi[i], qc = sq_lo[i];
    for (int b = 0; b < nb; ++b) {
        const float v = batch_score(cc, cc_m, cc_m2, stats, use_local, (i64)b * nvox + i, b);
        const int idx = first_index + b;
        if (v > bv || (v == bv && idx < bi)) {
            bv = v;
            bi = idx;
        }
        comp_add(&s, &sc, v);
        comp_add(&q, &qc, v * v);
    }
    best[i] = bv;
    best_idx[i] = bi;
    sum_hi[i] = s;
    sum_lo[i] = sc;
    sq_hi[i] = q;
    sq_lo[i] = qc;
}

/* Running maximum of the noise (phase-randomised) template's scores. */
KERNEL void update_noise(GLOBAL const float *cc, GLOBAL const float *cc_m,
                         GLOBAL const float *cc_m2, GLOBAL const float *stats,
                         const int use_local, const i64 nvox, const int nb,
                         GLOBAL float *best)
{
    const i64 i = GID0;
    if (i >= nvox) return;
    float bv = best[i];
    for (int b = 0; b < nb; ++b) {
        const float v = batch_score(cc, cc_m, cc_m2, stats, use_local, (i64)b * nvox + i, b);
        bv = v > bv ? v : bv;
    }
    best[i] = bv;
}
