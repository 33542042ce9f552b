/* Portability layer: lets tmfast_kernels.cl compile as OpenCL C 1.2 (pyopencl)
 * and as CUDA C++ (pycuda SourceModule with no_extern_c=True, or nvcc).
 *
 * The host prepends this header to the kernel source (no include paths needed).
 * Kernels use only: KERNEL, GLOBAL, LOCAL (declares local/shared arrays), LOCAL_PTR
 * (qualifies a pointer to them), DEVICE_FN, GID0, LID0, GROUP0, LSIZE0, BARRIER,
 * SQRTF, FLOORF, FABSF, MAKE_FLOAT2, the i64 type and the float2 vector type (.x, .y
 * on both platforms; no arithmetic operators on it, which CUDA lacks).
 */
#ifndef TMFAST_PORTABILITY_H
#define TMFAST_PORTABILITY_H

#ifdef __OPENCL_VERSION__
/* ------------------------------- OpenCL C ------------------------------------ */
#define KERNEL __kernel
#define GLOBAL __global
#define LOCAL __local
#define LOCAL_PTR __local
#define DEVICE_FN inline
#define GID0 ((i64)get_global_id(0))
#define LID0 ((int)get_local_id(0))
#define GROUP0 ((int)get_group_id(0))
#define LSIZE0 ((int)get_local_size(0))
#define BARRIER barrier(CLK_LOCAL_MEM_FENCE)
typedef long i64;
#define MAKE_FLOAT2(a, b) ((float2)((a), (b)))
#define SQRTF(x) sqrt(x)
#define FLOORF(x) floor(x)
#define FABSF(x) fabs(x)

#else
/* --------------------------------- CUDA -------------------------------------- */
#define KERNEL extern "C" __global__
#define GLOBAL
#define LOCAL __shared__
#define LOCAL_PTR
#define DEVICE_FN static __device__ __forceinline__
#define GID0 ((i64)blockIdx.x * (i64)blockDim.x + (i64)threadIdx.x)
#define LID0 ((int)threadIdx.x)
#define GROUP0 ((int)blockIdx.x)
#define LSIZE0 ((int)blockDim.x)
#define BARRIER __syncthreads()
typedef long long i64;
#define MAKE_FLOAT2(a, b) make_float2((a), (b))
#define SQRTF(x) sqrtf(x)
#define FLOORF(x) floorf(x)
#define FABSF(x) fabsf(x)
#endif

/* Work-group size of the reduction kernels; the host launches exactly this many
 * work items per group. */
#ifndef TMFAST_REDUCE_WG
#define TMFAST_REDUCE_WG 256
#endif

/* sigma_local is 1 where the local variance is <= this times (local mean square + 1)
 * of the standardised tomogram; the host passes _gpu.VAR_REL_FLOOR. */
#ifndef TMFAST_VAR_REL_FLOOR
#define TMFAST_VAR_REL_FLOOR 1e-4f
#endif

/* float2 elements of each of the two local buffers of zline_corr: columns of
 * length nz (+1 padding against bank conflicts) per work group; the host checks
 * (nz + 1) <= TMFAST_ZLINE_LMEM and passes _gpu.ZLINE_LMEM. */
#ifndef TMFAST_ZLINE_LMEM
#define TMFAST_ZLINE_LMEM 2000
#endif

#endif /* TMFAST_PORTABILITY_H */
