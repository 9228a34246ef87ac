// The instruction sets of the x86 kernel files, as target attributes on each function: the rest
// of the build stays at the baseline ISA, and the CPUID dispatch (isa.h) runs a file's kernels
// only on a CPU that has its whole set. Internal to src/backend/cpu; include it inside the
// files' `#if defined(__x86_64__) || defined(__i386__)`.
#pragma once

#include <immintrin.h>

// The AVX2 kernels' set, and the AVX-512 kernels' (F, BW, DQ, VL and VNNI on top of it).
#define FATHOM_TARGETS_AVX2 "avx2,fma,f16c"
#define FATHOM_TARGETS_AVX512 "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni," FATHOM_TARGETS_AVX2

#define FATHOM_AVX2 __attribute__((target(FATHOM_TARGETS_AVX2)))
#define FATHOM_AVX512 __attribute__((target(FATHOM_TARGETS_AVX512)))

// Files that need more or use less. The IQ3/IQ1 row kernels add BMI2 (pdep of sign and grid bits).
#define FATHOM_AVX512_BMI2 __attribute__((target(FATHOM_TARGETS_AVX512 ",bmi2")))
// The byte-permute i-quant kernels of the AMX table (vec_dot_iq_vbmi.cpp): AVX512_VBMI.
#define FATHOM_AVX512_VBMI __attribute__((target(FATHOM_TARGETS_AVX512 ",avx512vbmi")))
// The AMX kernels: the AVX-512 set plus the tile instructions and AVX512_BF16 (every AMX CPU has
// it; the emulated path, which runs on any AVX-512 CPU, does not execute its instructions).
#define FATHOM_AMX __attribute__((target(FATHOM_TARGETS_AVX512 ",avx512bf16,amx-tile,amx-int8,amx-bf16")))
// The attention kernels are float only: no F16C (only their cache row conversion takes it,
// FATHOM_AVX2), no byte/word or VNNI instructions.
#define FATHOM_AVX2_FMA __attribute__((target("avx2,fma")))
#define FATHOM_AVX512_FLOAT __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

// GCC 12's AVX-512 headers build vectors from _mm512_undefined_*() (`__Y = __Y`) and trip
// -Wmaybe-uninitialized, a false positive: a file of AVX-512 code says this once after its includes.
#if defined(__GNUC__) && !defined(__clang__)
#define FATHOM_AVX512_WARNINGS_OFF _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#else
#define FATHOM_AVX512_WARNINGS_OFF
#endif
