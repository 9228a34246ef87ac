// fathom devices: the CPU, memory and GPUs this machine offers, and the backend fathom would pick.
#include <cstdio>

#include "plan/devices.h"
#include "plan/report.h"
#include "tools/args.h"
#include "tools/commands.h"

namespace fathom::tools {

int cmd_devices(const Args& args) {
  bool json = false, no_bench = false;
  ArgParser p("fathom devices [--json] [--no-bench]",
              "List the CPU (model, cores, ISA extensions), memory (total, available, NUMA nodes, measured read\n"
              "bandwidth), the CPU matmul speed, OpenCL and CUDA devices (loaded at run time if installed), and\n"
              "which backend fathom would use and why.");
  p.add_flag("--json", "machine-readable output", &json);
  p.add_flag("--no-bench", "skip the 0.4 s measurements of memory bandwidth and matmul speed", &no_bench);
  if (std::optional<int> rc = p.parse(args)) return *rc;
  const plan::DeviceReport report = plan::detect_devices(!no_bench);
  if (json) std::printf("%s\n", plan::devices_to_json(report).dump(2).c_str());
  else std::printf("%s", plan::devices_to_text(report).c_str());
  return 0;
}

}  // namespace fathom::tools
