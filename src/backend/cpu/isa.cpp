#include "backend/cpu/isa.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FATHOM_HAVE_CPUID 1
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fathom::cpu {

namespace {

constexpr Isa kAllIsas[] = {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512, Isa::kAmx};

// Why the AMX path cannot run with features f ("" when it can, permission aside).
std::string amx_missing(const IsaFeatures& f) {
  if (!f.avx512) return "no AVX-512 (F, BW, DQ, VL and VNNI), which the AMX path uses around its tiles";
  if (!f.amx_tile || !f.amx_int8) return "CPUID reports no AMX-TILE and AMX-INT8";
  if (!f.amx_bf16 || !f.avx512_bf16) return "CPUID reports no AMX-BF16 and AVX512_BF16, which the AMX path's BF16 tiles use";
  if (!f.avx512_vbmi) return "CPUID reports no AVX512_VBMI, which the AMX path's i-quant row kernels use";
  if (!f.os_tile_state) return "the OS does not enable the AMX tile state (XCR0 bits 17 and 18)";
  return "";
}

Isa widest_vector_isa(const IsaFeatures& f) { return f.avx512 ? Isa::kAvx512 : f.avx2 ? Isa::kAvx2 : Isa::kGeneric; }

std::string valid_names() {
  std::string out;
  for (Isa isa : kAllIsas) out += std::string(out.empty() ? "" : ", ") + isa_name(isa);
  return out;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kGeneric: return "generic";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kAmx: return "amx";
  }
  return "?";
}

IsaFeatures detect_isa_features() {
  IsaFeatures f;
#ifdef FATHOM_HAVE_CPUID
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni");
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
    f.amx_int8 = d & (1u << 25);
    f.avx512_vbmi = f.avx512 && (c & (1u << 1));
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = f.avx512 && (a & (1u << 5));
  // XGETBV faults unless the OS set CR4.OSXSAVE (CPUID.1:ECX[27]).
  if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 27))) {
    uint32_t xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    f.os_tile_state = (xcr0_lo & 0x60000u) == 0x60000u;
  }
#endif
  return f;
}

Status request_amx_permission() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kArchReqXcompPerm = 0x1023;  // arch/x86/include/uapi/asm/prctl.h
  constexpr long kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0) return Status::ok();
  return error(ErrorCode::kUnavailable,
               strprintf("the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM: %s)", std::strerror(errno)));
#else
  return error(ErrorCode::kUnavailable, "AMX tiles are used on Linux x86-64 only");
#endif
}

Expected<IsaChoice> choose_isa(const IsaFeatures& f, std::string_view forced, Status (*request)()) {
  const Isa vec = widest_vector_isa(f);
  const std::string missing = amx_missing(f);
  if (forced.empty()) {
    if (!missing.empty()) return IsaChoice{vec, "AMX not used: " + missing};
    if (Status s = request(); !s) return IsaChoice{vec, "AMX not used: " + s.message()};
    return IsaChoice{Isa::kAmx, ""};
  }
  const std::string setting = "FATHOM_CPU_ISA=" + std::string(forced);
  for (Isa isa : kAllIsas) {
    if (forced != isa_name(isa)) continue;
    if (isa == Isa::kAmx) {
      if (!missing.empty()) return error(ErrorCode::kUnsupported, setting + ", but " + missing);
      if (Status s = request(); !s) return error(ErrorCode::kUnsupported, setting + ", but " + s.message());
    } else if (isa > vec) {
      return error(ErrorCode::kUnsupported, strprintf("%s, but this CPU offers at most %s", setting.c_str(), isa_name(vec)));
    }
    return IsaChoice{isa, "forced by " + setting};
  }
  return error(ErrorCode::kInvalidArgument, setting + " is not one of " + valid_names());
}

const IsaChoice& hardware_isa() {
  // CPUID does not change while the process runs, and the permission is per process: once.
  static const IsaChoice choice = [] {
    Expected<IsaChoice> c = choose_isa(detect_isa_features(), "", request_amx_permission);
    FATHOM_CHECK(c.has_value());  // only a forced name can fail
    return *c;
  }();
  return choice;
}

const Expected<IsaChoice>& active_isa_choice() {
  static const Expected<IsaChoice> choice = []() -> Expected<IsaChoice> {
    const char* forced = std::getenv("FATHOM_CPU_ISA");
    if (forced == nullptr || forced[0] == '\0') return hardware_isa();
    return choose_isa(detect_isa_features(), forced, request_amx_permission);
  }();
  return choice;
}

}  // namespace fathom::cpu
