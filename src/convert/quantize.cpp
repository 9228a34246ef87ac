#include "convert/quantize.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

namespace fathom::convert {

namespace {

// Everything one tensor's fill callback needs, fixed before writing starts.
struct TensorPlan {
  size_t index;               // into in.tensors()
  DType out_type;             // type written
  const float* importance;    // [ne[0] * ne[2]] per-column importance, or nullptr
  uint64_t out_bytes;         // bytes written for this tensor
};

// llama.cpp's refusal for the 1-bit i-quants without an imatrix (llama_model_quantize_impl):
// IQ1_S on any tensor, IQ1_M on any but the embedding and the output. Returns the message, or
// "" when the tensor may be written.
std::string iq1_imatrix_refusal(const std::string& tensor_name, DType out) {
  const bool needs = out == DType::IQ1_S ||
                     (out == DType::IQ1_M && tensor_name != "token_embd.weight" && tensor_name != "output.weight");
  if (!needs) return "";
  return strprintf("tensor %s would be %s, which needs an importance matrix (1-bit weights are too coarse to round "
                   "unweighted): make one with `fathom imatrix` and pass --imatrix FILE",
                   tensor_name.c_str(), dtype_name(out));
}

}  // namespace

Expected<QuantizeReport> quantize_model(const gguf::GgufFile& in, const std::string& out_path, const QuantizeOptions& options) {
  const std::string arch = in.architecture();
  const std::vector<gguf::TensorInfo>& tensors = in.tensors();

  quant::MixModel model;
  model.arch = arch;
  model.n_layer = in.get_int(arch + ".block_count").value_or(0);
  model.n_expert = in.get_int(arch + ".expert_count").value_or(0);
  model.n_head = in.get_int(arch + ".attention.head_count").value_or(0);
  model.n_head_kv = in.get_int(arch + ".attention.head_count_kv").value_or(model.n_head);
  model.has_imatrix = options.imatrix != nullptr;
  std::vector<quant::MixTensor> mix_in;
  for (const gguf::TensorInfo& t : tensors) mix_in.push_back({t.view.name, t.view.ne, t.view.dtype});
  const quant::MixResult mix = quant::mix_types(options.ftype, model, mix_in);
  bool has_output = false;
  for (const gguf::TensorInfo& t : tensors) has_output = has_output || t.view.name == "output.weight";
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return quant::llama_tensor_order(tensors[a].view.name, tensors[b].view.name); });
  auto warn = [&](const std::string& msg) {
    if (options.on_warning) options.on_warning(msg);
  };

  QuantizeReport report;
  std::vector<TensorPlan> plans;
  bool warned_requantize = false;
  for (size_t idx : order) {
    const TensorView& t = tensors[idx].view;
    DType out = mix.types[idx];
    const bool is_output = t.name == "output.weight" || (!has_output && t.name == "token_embd.weight");
    if (options.keep_output_f16 && is_output) out = DType::F16;
    if (out != t.dtype && !quant::can_dequantize(t.dtype))
      return error(ErrorCode::kUnsupported, strprintf("tensor %s: cannot read type %s to convert it to %s", t.name.c_str(),
                                                      dtype_name(t.dtype), dtype_name(out)));
    if (out != t.dtype && !quant::can_quantize(out))
      return error(ErrorCode::kUnsupported, strprintf("tensor %s: cannot write type %s", t.name.c_str(), dtype_name(out)));
    const std::string refusal = options.imatrix || out == t.dtype ? "" : iq1_imatrix_refusal(t.name, out);
    if (!refusal.empty()) return error(ErrorCode::kInvalidArgument, refusal);
    if (!options.imatrix && quant::is_quantizable({t.name, t.ne, t.dtype}) && quant::requires_imatrix(options.ftype, t.name, out))
      return error(ErrorCode::kInvalidArgument,
                   strprintf("%s needs an importance matrix (tensor %s would be %s): make one with `fathom imatrix` and "
                             "pass --imatrix FILE",
                             options.ftype.name, t.name.c_str(), dtype_name(out)));
    if (out != t.dtype && traits(t.dtype).is_quantized) {
      ++report.n_requantized;
      if (!warned_requantize)
        warn(strprintf("input tensor %s is already %s: requantizing a quantized model compounds the errors of both "
                       "roundings; quantize from the F32/F16/BF16 original when you have it",
                       t.name.c_str(), dtype_name(t.dtype)));
      warned_requantize = true;
    }
    const float* importance = nullptr;
    if (options.imatrix && out != t.dtype && traits(out).is_quantized) {
      auto it = options.imatrix->find(t.name);
      if (it == options.imatrix->end()) {
        warn("no importance data for " + t.name + "; it is quantized unweighted");
      } else if (it->second.size() != static_cast<size_t>(t.ne[0] * t.ne[2])) {
        if (t.name != "token_embd.weight")
          return error(ErrorCode::kInvalidFile,
                       strprintf("imatrix entry %s has %zu values, the tensor needs %lld (columns x experts); was the "
                                 "imatrix made for another model?",
                                 t.name.c_str(), it->second.size(), static_cast<long long>(t.ne[0] * t.ne[2])));
      } else {
        importance = it->second.data();
        ++report.n_with_imatrix;
      }
    }
    const uint64_t out_bytes = row_size(out, t.ne[0]) * static_cast<uint64_t>(t.n_rows());
    report.bytes_in += tensors[idx].n_bytes;
    report.bytes_out += out_bytes;
    ++report.type_counts[dtype_name(out)];
    plans.push_back({idx, out, importance, out_bytes});
  }
  if (mix.n_fallback > 0)
    warn(strprintf("%d tensors have rows that do not fit the chosen block format and use llama.cpp's fallback type",
                   mix.n_fallback));

  gguf::GgufWriter w;
  for (const auto& [key, value] : in.metadata()) {
    if (key == "general.quantization_version" || key == "general.file_type" || key.starts_with("split.")) continue;
    w.set(key, value);
  }
  w.set_u32("general.quantization_version", 2);
  w.set_u32("general.file_type", static_cast<uint32_t>(options.ftype.id));

  ThreadPool pool(options.n_threads);
  size_t n_done = 0;
  uint64_t bytes_done = 0;
  for (const TensorPlan& plan : plans) {
    const TensorView& t = tensors[plan.index].view;
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + std::max(1, t.n_dims));
    w.add_tensor(t.name, plan.out_type, std::move(ne), [&, plan](uint8_t* dst, size_t n_bytes) -> Status {
      const TensorView& src = tensors[plan.index].view;
      if (plan.out_type == src.dtype) {
        std::memcpy(dst, src.data, n_bytes);
      } else {
        const int64_t n_per_row = src.ne[0], rows_per_matrix = src.ne[1];
        const size_t out_row = row_size(plan.out_type, n_per_row);
        pool.parallel_for(src.n_rows(), 8, [&](int, int64_t begin, int64_t end) {
          std::vector<float> row(static_cast<size_t>(n_per_row));  // [n_per_row] one row in f32
          for (int64_t r = begin; r < end; ++r) {
            quant::dequantize_row(src.dtype, src.row(r), row.data(), n_per_row);
            // Importance is per matrix (expert): ne[0] values for each of the ne[2] matrices.
            const float* imp = plan.importance ? plan.importance + (r / rows_per_matrix % src.ne[2]) * n_per_row : nullptr;
            quant::quantize_row_ref(plan.out_type, row.data(), dst + out_row * static_cast<size_t>(r), n_per_row, imp);
          }
        });
      }
      ++n_done;
      bytes_done += plan.out_bytes;
      if (options.on_tensor) options.on_tensor(n_done, plans.size(), src.name, plan.out_type, bytes_done, report.bytes_out);
      return Status::ok();
    });
  }
  FATHOM_RETURN_IF_ERROR(w.write(out_path));
  return report;
}

}  // namespace fathom::convert
