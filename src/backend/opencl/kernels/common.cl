// Shared helpers of the fathom OpenCL kernels. OpenCL C 1.2 baseline: no extension is required.
// The host passes -DWG=<lanes per work-group> and one option per kernel variant it chose from the
// device's extensions (OpenClKernelVariants, docs/decisions.md); tests force each one:
//   FATHOM_ACC_F16            the products of one q4_0/q8_0/q4_K/iq4_nl/iq4_xs (sub-)block are summed in
//                             half (cl_khr_fp16)
//   FATHOM_ACC_F16_EMULATED   the same roundings in float arithmetic, for devices without half
//   FATHOM_SUBGROUPS          reductions with sub_group_reduce_add (cl_khr_subgroups, cl_intel_subgroups)
//   FATHOM_SUBGROUPS_EMULATED the same two-level reduction over fixed 16-lane groups in local memory
//   FATHOM_INT_DOT            q4_0/q8_0/iq4_nl products on int8 activations with the dot products of
//                             cl_khr_integer_dot_product
//   FATHOM_INT_DOT_EMULATED   the same kernels with the dot products in plain C
// None of them: f32 sums, local-memory tree reductions, f32 activations. PoCL on the CPU reports
// none of the extensions, so there only the portable and the emulated paths run; the native ones
// differ from their emulations only in the primitive (half arithmetic, sub_group_reduce_add, the
// packed dot), and a device whose compiler rejects them gets the portable build (OpenClBackend::create).
#ifdef FATHOM_INJECT_BUILD_ERROR
#error "program build failure injected on purpose (OpenCL fallback test)"
#endif

#ifndef WG
#define WG 64
#endif

// IEEE binary16 at a byte address (GGUF block fields are only 2-byte aligned): the bytes are
// assembled in private memory so vload_half, core since OpenCL 1.0, sees an aligned half.
inline float load_half(global const uchar* p) {
  const ushort bits = (ushort)p[0] | (ushort)((ushort)p[1] << 8);
  return vload_half(0, (const private half*)&bits);
}

// v rounded to the nearest half (vstore_half rounds to nearest even), back as a float. The half
// lives in a ushort: without cl_khr_fp16 no variable may have type half.
inline float round_to_half(float v) {
  ushort bits;
  vstore_half(v, 0, (private half*)&bits);
  return vload_half(0, (const private half*)&bits);
}

// ---- accumulation of one weight block's products: BLOCK_MAD(acc, w, x) = acc + w * x ----------
#if defined(FATHOM_ACC_F16)
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
typedef half block_acc;
#define BLOCK_MAD(acc, w, x) ((acc) + (half)(w) * (half)(x))
#elif defined(FATHOM_ACC_F16_EMULATED)
typedef float block_acc;
// Half operands, product and sum, as the native variant computes them (a product of two halves
// is exact in float, so only the final roundings can differ, by double rounding of the sum).
#define BLOCK_MAD(acc, w, x) round_to_half((acc) + round_to_half(round_to_half(w) * round_to_half(x)))
#else
typedef float block_acc;
#define BLOCK_MAD(acc, w, x) ((acc) + (w) * (x))
// Two products summed before they join the accumulator: a shorter dependency chain.
#define BLOCK_MAD2(acc, w1, x1, w2, x2) ((acc) + ((w1) * (x1) + (w2) * (x2)))
#endif
#ifndef BLOCK_MAD2
#define BLOCK_MAD2(acc, w1, x1, w2, x2) BLOCK_MAD(BLOCK_MAD(acc, w1, x1), w2, x2)
#endif

// ---- reductions over the lanes of a work-group ------------------------------------------------
// With subgroups, each subgroup adds up its lanes (SG_SUM), and its lane 0 leaves the sum in local
// memory for the last step; without, a tree in local memory.
#if defined(FATHOM_SUBGROUPS)
#if defined(cl_intel_subgroups)
#pragma OPENCL EXTENSION cl_intel_subgroups : enable
#else
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif
#define FATHOM_SUBGROUP_REDUCTION 1
#define SG_ID() ((int)get_sub_group_id())
#define SG_LANE() ((int)get_sub_group_local_id())
#define SG_COUNT() ((int)get_num_sub_groups())
#define SG_SUM(v, scratch) sub_group_reduce_add(v)
#elif defined(FATHOM_SUBGROUPS_EMULATED)
#define FATHOM_SUBGROUP_REDUCTION 1
#define SG_SIZE 16
#define SG_ID() ((int)get_local_id(0) / SG_SIZE)
#define SG_LANE() ((int)get_local_id(0) % SG_SIZE)
#define SG_COUNT() (WG / SG_SIZE)
#define SG_SUM(v, scratch) sg_sum_emulated(v, scratch)
// sub_group_reduce_add over SG_SIZE consecutive lanes. scratch: local [WG]; all lanes must call it.
inline float sg_sum_emulated(float v, local float* scratch) {
  const int lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  float total = 0.0f;
  for (int i = lid - SG_LANE(); i < lid - SG_LANE() + SG_SIZE; ++i) total += scratch[i];
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}
#endif

// Sum of v over the WG lanes of the work-group; every lane gets the total. scratch: local [2 * WG].
// Must be reached by all lanes (it contains barriers).
inline float wg_sum(float v, local float* scratch) {
#if defined(FATHOM_SUBGROUP_REDUCTION)
  const float part = SG_SUM(v, scratch + WG);
  if (SG_LANE() == 0) scratch[SG_ID()] = part;
  barrier(CLK_LOCAL_MEM_FENCE);
  float total = 0.0f;
  for (int i = 0; i < SG_COUNT(); ++i) total += scratch[i];
#else
  const int lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = scratch[0];
#endif
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}

// Adds up acc[t] for t < tokens over the WG lanes; lane t < n_here then writes token t's total to
// y[t * n_out]. partial: local [tokens * WG]; scratch: local [WG] (emulated subgroups only). All
// lanes must call it.
inline void store_lane_sums(const float* acc, int tokens, int n_here, local float* partial, local float* scratch,
                            global float* y, int n_out) {
  const int lid = get_local_id(0);
#if defined(FATHOM_SUBGROUP_REDUCTION)
  for (int t = 0; t < tokens; ++t) {
    const float part = SG_SUM(acc[t], scratch);
    if (SG_LANE() == 0) partial[t * WG + SG_ID()] = part;
  }
  const int n_parts = SG_COUNT();
#else
  for (int t = 0; t < tokens; ++t) partial[t * WG + lid] = acc[t];
  const int n_parts = WG;
#endif
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid < n_here) {
    float total = 0.0f;
    for (int i = 0; i < n_parts; ++i) total += partial[lid * WG + i];
    y[(ulong)lid * n_out] = total;
  }
}
