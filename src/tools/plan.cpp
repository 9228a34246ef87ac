// fathom plan: what fits this hardware and how fast it will run — sizes from a GGUF file or an
// architecture preset, placement on a device from the built-in table (or this machine), roofline
// speed bounds, the best quant that fits, and optionally the buy-vs-rent break-even.
#include <cstdio>
#include <sstream>

#include "plan/devices.h"
#include "plan/hardware.h"
#include "plan/planner.h"
#include "plan/report.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

namespace fathom::tools {

namespace {

int fail(const Status& st) {
  std::fprintf(stderr, "fathom plan: %s\n", st.to_string().c_str());
  return st.code() == ErrorCode::kInvalidArgument || st.code() == ErrorCode::kNotFound ? 2 : 1;
}

// A CUDA device found on this machine borrows compute/price figures from the table entry its
// name matches ("NVIDIA H100 80GB HBM3" -> nvidia-h100-sxm-80gb); the driver reports none.
void fill_from_table(const std::vector<plan::HardwareSpec>& table, const std::string& gpu_name, plan::HardwareSpec* spec) {
  std::istringstream words(gpu_name);
  for (std::string w; words >> w;) {
    if (w.size() < 3 || w == "NVIDIA" || w == "GeForce" || w == "RTX") continue;
    Expected<plan::HardwareSpec> h = plan::find_hardware(table, w);
    if (!h) continue;
    spec->fp16_tflops = h->fp16_tflops;
    spec->int8_tops = h->int8_tops;
    spec->tdp_w = h->tdp_w;
    spec->price_usd = h->price_usd;
    spec->source += "; compute/power/price from table entry " + h->name;
    return;
  }
}

}  // namespace

int cmd_plan(const Args& args) {
  std::string model_path, preset, quant = "q4_k_m", device_name = "auto", host_name, hardware_file;
  KvCacheTypeOptions cache_types;
  int64_t ctx = 4096, concurrency = 1;
  double ram_gib = 0, igpu_fraction = 0.5;
  bool roi = false, json = false, list_devices = false, list_presets = false, no_bench = false;
  double cloud_price = 0, hw_price = 0, power_w = 0, power_price = 0.15, hours_per_day = 24;

  ArgParser p("fathom plan -m FILE.gguf | --arch-preset NAME [options]",
              "Size a model for a device: weights per quant type, KV cache, whether it fits (and what to\n"
              "offload if not), upper bounds for decode (bandwidth / bytes per token) and prefill (peak ops /\n"
              "2 x active params), and the quant to use: the largest that fits with room to spare, not a\n"
              "16-bit one where q8_0 fits. Sizes are printed in GiB (2^30 B) with GB (1e9 B) where useful.\n\n"
              "examples:\n"
              "  fathom plan --arch-preset deepseek-r1 --quant q4_k_m --device h100\n"
              "  fathom plan --arch-preset deepseek-r1-distill-qwen-7b --ctx 8192 --device rtx-4060-8gb\n"
              "  fathom plan -m model.gguf --device auto --concurrency 8 --json\n"
              "  fathom plan --arch-preset deepseek-v3 --device h200 --roi --cloud-price 3.5");
  add_model_option(p, &model_path, "GGUF file to size (metadata and tensor index only)");
  p.add_string("--arch-preset", "NAME", "built-in architecture instead of a file (--list-presets)", &preset);
  p.add_string("--quant", "Q", "a `fathom quantize` TYPE (default q4_k_m); 'file' keeps a GGUF's types", &quant);
  p.add_int("-c,--ctx-size,--ctx", "N", "context length per sequence (default 4096)", &ctx, Range::between(1, kMaxTokens));
  p.add_int("--concurrency", "C", "sequences resident at once (default 1)", &concurrency, Range::between(1, 1 << 16));
  cache_types.add_to(p, "", "the KV cache (the bytes the engine allocates for them)");
  p.add_string("-d,--device", "NAME", "table entry (fuzzy: '4090') or 'auto' for this machine (default)", &device_name);
  p.add_string("--host", "NAME", "host CPU/RAM entry for offload (default: cpu-ddr5-12ch for >=40 GB GPUs, else cpu-ddr5-2ch)",
               &host_name);
  p.add_float("--ram", "GiB", "system RAM (shared-memory devices and offload host)", &ram_gib, Range{0, 1 << 20, true});
  p.add_float("--igpu-fraction", "F", "share of system RAM an iGPU may use (default 0.5)", &igpu_fraction,
              Range{0, 1, true});
  p.add_string("--hardware", "FILE.json", "add or override device entries (same fields as --list-devices --json)",
               &hardware_file);
  p.add_flag("--no-bench", "with --device auto: skip measuring memory bandwidth and matmul speed (then assumed)", &no_bench);
  p.add_flag("--roi", "print the buy-vs-rent break-even (needs --cloud-price)", &roi);
  p.add_float("--cloud-price", "USD/h", "cloud rental price per hour of a comparable instance", &cloud_price,
              Range{0, 1e6, true});
  p.add_float("--hw-price", "USD", "hardware price (default: the table's)", &hw_price, Range{0, 1e9, true});
  p.add_float("--power", "W", "power draw while in use (default: the table's TDP)", &power_w, Range{0, 1e6, true});
  p.add_float("--power-price", "USD/kWh", "electricity price (default 0.15)", &power_price, Range::between(0, 100));
  p.add_float("--hours-per-day", "H", "utilisation (default 24)", &hours_per_day, Range{0, 24, true});
  p.add_flag("--json", "machine-readable output", &json);
  p.add_flag("--list-devices", "print the hardware table and exit", &list_devices);
  p.add_flag("--list-presets", "print the architecture presets and exit", &list_presets);
  if (std::optional<int> rc = p.parse(args)) return *rc;

  std::vector<plan::HardwareSpec> table = plan::builtin_hardware();
  if (!hardware_file.empty())
    if (Status st = plan::merge_hardware_json(hardware_file, &table); !st) return fail(st);
  if (list_devices) {
    if (json) {
      nlohmann::json j = nlohmann::json::array();
      for (const plan::HardwareSpec& h : table) j.push_back(plan::hardware_to_json(h));
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("%s", plan::hardware_table_text(table).c_str());
    }
    return 0;
  }
  if (list_presets) {
    for (const plan::PresetInfo& pi : plan::list_presets()) std::printf("%-32s %s\n", pi.name, pi.summary);
    return 0;
  }
  if (model_path.empty() == preset.empty()) return fail(error(ErrorCode::kInvalidArgument, "give exactly one of -m FILE.gguf or --arch-preset NAME (see --help)"));

  plan::PlanOptions opts;
  Expected<plan::QuantScheme> q = plan::parse_quant(quant);
  if (!q) return fail(q.status());
  opts.quant = *q;
  Expected<KvCacheTypes> kv_types = cache_types.parse();
  if (!kv_types) return fail(kv_types.status());
  opts.kv_types = *kv_types;
  opts.ctx = ctx;
  opts.concurrency = concurrency;
  opts.ram_gib = ram_gib;
  opts.igpu_memory_fraction = igpu_fraction;

  Expected<plan::ModelDesc> model = preset.empty() ? plan::model_from_gguf(model_path) : plan::model_from_preset(preset);
  if (!model) return fail(model.status());
  if (!opts.quant.ftype && !model->from_file)
    return fail(error(ErrorCode::kInvalidArgument, "--quant file needs -m FILE.gguf"));

  plan::HardwareSpec device, host;
  if (device_name == "auto") {
    const plan::DeviceReport local = plan::detect_devices(!no_bench);
    device = plan::local_hardware_spec(local);
    host = plan::local_host_spec(local);
    if (!local.cuda.devices.empty()) fill_from_table(table, local.cuda.devices.front().name, &device);
  } else {
    Expected<plan::HardwareSpec> d = plan::find_hardware(table, device_name);
    if (!d) return fail(d.status());
    device = *d;
  }
  if (!host_name.empty()) {
    Expected<plan::HardwareSpec> h = plan::find_hardware(table, host_name);
    if (!h) return fail(h.status());
    host = *h;
  } else if (host.name.empty()) {
    // Datacenter GPUs sit in servers with many memory channels; consumer cards in desktops.
    const bool server = device.kind == plan::DeviceKind::kDgpu && device.memory_gb >= 40;
    host = *plan::find_hardware(table, server ? "cpu-ddr5-12ch" : "cpu-ddr5-2ch");
  }

  const plan::Plan result = plan::make_plan(*model, opts, device, host);
  plan::RoiInputs roi_in;
  plan::RoiResult roi_out;
  if (roi) {
    if (cloud_price <= 0) return fail(error(ErrorCode::kInvalidArgument, "--roi needs --cloud-price USD/h"));
    roi_in.cloud_usd_per_hour = cloud_price;
    roi_in.hw_price_usd = hw_price > 0 ? hw_price : device.price_usd;
    roi_in.power_w = power_w > 0 ? power_w : device.tdp_w;
    roi_in.usd_per_kwh = power_price;
    roi_in.hours_per_day = hours_per_day;
    if (roi_in.hw_price_usd <= 0)
      return fail(error(ErrorCode::kInvalidArgument, "no price known for " + device.name + "; give --hw-price"));
    roi_out = plan::compute_roi(roi_in);
  }
  if (json) {
    nlohmann::json j = plan::plan_to_json(*model, result);
    if (roi) j["roi"] = plan::roi_to_json(roi_in, roi_out);
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s", plan::plan_to_text(*model, result).c_str());
    if (roi) std::printf("\n%s", plan::roi_to_text(roi_in, roi_out).c_str());
  }
  return 0;
}

}  // namespace fathom::tools
