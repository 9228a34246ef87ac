// Shared helpers of the fathom OpenCL kernels. OpenCL C 1.2 baseline: no extension is required.
// The host passes -DWG=<lanes per work-group> and -DFATHOM_HAS_FP16/-DFATHOM_HAS_SUBGROUPS/
// -DFATHOM_HAS_INT_DOT for the optional extensions a device reports (see docs/decisions.md).
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

// Sum of v over the WG lanes of the work-group; every lane gets the total. scratch: local [WG].
// Must be reached by all lanes (it contains barriers).
inline float wg_sum(float v, local float* scratch) {
  const int lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}
