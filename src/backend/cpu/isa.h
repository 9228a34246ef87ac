// Which instruction set the CPU kernels use: what CPUID and XCR0 report, the Linux permission AMX
// tiles need, and FATHOM_CPU_ISA, which forces a narrower path (tests, comparisons). The choice
// is pure logic over these inputs (choose_isa), so every fallback can be tested on any machine.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace fathom::cpu {

// Ordered narrowest to widest; each includes the ones before it.
enum class Isa {
  kGeneric,  // portable C++
  kAvx2,     // AVX2 + FMA + F16C
  kAvx512,   // AVX-512 F/BW/DQ/VL + VNNI (Ice Lake, Zen 4 and later)
  kAmx,      // kAvx512 plus AMX tiles for products of 16+ tokens and prefill attention, and VBMI
             // byte permutes for i-quant rows (Sapphire Rapids and later)
};

const char* isa_name(Isa isa);  // "generic", "avx2", "avx512", "amx": the FATHOM_CPU_ISA values
// The vector ISA of a path: kAmx adds tiles to the AVX-512 kernels, which serve everything else.
inline Isa vector_isa(Isa isa) { return isa == Isa::kAmx ? Isa::kAvx512 : isa; }

// What the CPU and OS offer, as far as the kernel tables care.
struct IsaFeatures {
  bool avx2 = false;           // AVX2, FMA and F16C usable (OS saves YMM)
  bool avx512 = false;         // AVX-512 F, BW, DQ, VL and VNNI usable (OS saves ZMM)
  bool amx_tile = false;       // CPUID.(7,0):EDX[24]
  bool amx_int8 = false;       // CPUID.(7,0):EDX[25]
  bool amx_bf16 = false;       // CPUID.(7,0):EDX[22]
  bool avx512_bf16 = false;    // CPUID.(7,1):EAX[5] (VCVTNE2PS2BF16, which the BF16 tile path uses)
  bool avx512_vbmi = false;    // CPUID.(7,0):ECX[1] (byte permutes, which the AMX table's IQ2_XXS and IQ1_S rows use)
  bool os_tile_state = false;  // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS manages tiles
};
IsaFeatures detect_isa_features();

// Linux hands out the 8 KiB tile data state only on request: arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA), once per process, before the first tile instruction (which otherwise
// faults). The error carries the kernel's refusal (e.g. a kernel older than 5.16).
Status request_amx_permission();

struct IsaChoice {
  Isa isa = Isa::kGeneric;  // the path the kernels take
  std::string why;          // why not a wider one; "" when isa is the widest this CPU has
};

// The path for features f: `forced` (a FATHOM_CPU_ISA value; empty: the widest available).
// AMX needs AVX-512, AMX-TILE, AMX-INT8 and the OS tile state, and asks `request` for the
// permission only when it would be chosen; a refusal falls back to AVX-512 with the reason in
// `why`. Errors: an unknown name, or a forced path this CPU lacks (never a silent downgrade).
Expected<IsaChoice> choose_isa(const IsaFeatures& f, std::string_view forced, Status (*request)());

// The widest path this machine offers (evaluated once; may ask for the AMX permission).
const IsaChoice& hardware_isa();
// The path the kernels use: FATHOM_CPU_ISA if set (read once), else hardware_isa(). The CLI
// reports the error at start-up; kernels reached with an invalid value abort with it.
const Expected<IsaChoice>& active_isa_choice();

}  // namespace fathom::cpu
