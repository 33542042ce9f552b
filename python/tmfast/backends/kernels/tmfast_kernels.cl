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
