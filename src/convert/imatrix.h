// Importance matrices (llama.cpp's "imatrix"): for every matmul weight, the per-column mean of
// the squared input activations over a calibration text. K-quant rounding weighs each column's
// error by it, so columns that carry large activations are kept more exactly.
//
// Collection wraps the real backend in a decorator (ImatrixCollector) that forwards every op and
// records matmul inputs keyed by the weight's tensor name, so the architectures need no hooks.
//
// File format (llama.cpp's GGUF imatrix, what llama-imatrix writes since mid-2025):
//   general.type = "imatrix", imatrix.datasets = [text file names], imatrix.chunk_count (u32),
//   imatrix.chunk_size (u32, tokens per chunk); per weight W two F32 tensors:
//   "W.in_sum2" ne {n_in, n_mat}: sum over tokens of x^2 per column, per matrix (expert);
//   "W.counts"  ne {1, n_mat}:    tokens seen per matrix.
// The legacy binary .dat format (int32 n_entries; per entry int32 name length, name bytes,
// int32 ncall, int32 nval, float values[nval] = mean x^2 * ncall) is read too, and written when
// the output name ends in ".dat".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/forwarding_backend.h"
#include "convert/quantize.h"
#include "core/mapped_file.h"
#include "core/status.h"

namespace fathom::gguf {
class GgufFile;
}

namespace fathom::convert {

// Accumulated statistics of one weight tensor.
struct ImatrixEntry {
  int64_t n_in = 0;                // columns (ne[0] of the weight)
  std::vector<double> in_sum2;     // [n_mat, n_in] sum of x^2 per column per matrix
  std::vector<double> counts;      // [n_mat] tokens seen per matrix
};

struct ImatrixData {
  std::map<std::string, ImatrixEntry, std::less<>> entries;  // weight tensor name -> statistics
  std::vector<std::string> datasets;  // calibration file names
  int64_t chunk_count = 0;            // chunks processed
  int64_t chunk_size = 0;             // tokens per chunk
};

// Backend decorator: every op goes to `inner`; matmul inputs are recorded first. Slices of 3-D
// weights (experts, MLA per-head matrices) are attributed to their matrix by locating the slice's
// data inside the file's tensor of the same name. Weights not in `file` (derived copies) and
// names in `skip` are not recorded.
class ImatrixCollector final : public ForwardingBackend {
 public:
  ImatrixCollector(Backend& inner, const gguf::GgufFile& file, std::vector<std::string> skip = {});

  const char* name() const override { return "imatrix"; }
  void matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) override;
  // The batched and fused products as Backend's defaults run them: through matmul, which records.
  void matmul_batch(const std::vector<MatmulJob>& jobs) override { Backend::matmul_batch(jobs); }
  void rms_norm_matmul_batch(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                             const std::vector<MatmulJob>& jobs) override {
    Backend::rms_norm_matmul_batch(x, norm_weight, n_tokens, n, eps, normed, jobs);
  }
  void swiglu_matmul(const TensorView& w, float* gate, const float* up, int64_t n_tokens, float* y) override {
    Backend::swiglu_matmul(w, gate, up, n_tokens, y);
  }
  void rms_norm_ffn(const float* x, const float* norm_weight, int64_t n_tokens, int64_t n, float eps, float* normed,
                    const TensorView& w_gate, const TensorView& w_up, const TensorView& w_down, float* gate, float* up,
                    float* y) override {
    Backend::rms_norm_ffn(x, norm_weight, n_tokens, n, eps, normed, w_gate, w_up, w_down, gate, up, y);
  }

  ImatrixData& data() { return data_; }
  const ImatrixData& data() const { return data_; }

 private:
  const gguf::GgufFile& file_;
  std::vector<std::string> skip_;  // tensor names never recorded (output.weight by default)
  ImatrixData data_;
};

// Writes GGUF (or legacy .dat when path ends in ".dat").
Status write_imatrix(const ImatrixData& data, const std::string& path);

// What quantization consumes: per tensor, the mean x^2 per column per matrix.
struct ImatrixFile {
  ImportanceMap values;          // tensor name -> [n_mat * n_in] means
  int64_t chunk_count = 0;       // chunks the statistics came from (0 when unknown)
  std::vector<std::string> datasets;  // calibration file names recorded in the file
};
// Reads either format; malformed files are errors naming the problem.
Expected<ImatrixFile> read_imatrix(const std::string& path);

struct ImatrixOptions {
  int64_t n_ctx = 512;        // tokens per chunk
  int64_t n_chunks = -1;      // -1: all chunks the text has
  int n_threads = 0;          // 0: all cores
  bool process_output = false;  // also collect output.weight (llama.cpp's --process-output)
  MapOptions map;               // the model file mapped (default) or read, locked or not
  // After each chunk: (chunk index from 1, chunk count, running perplexity estimate).
  std::function<void(int64_t, int64_t, double)> on_chunk;
};

// Runs the text through the model chunk by chunk and collects the statistics. The perplexity of
// the scored halves is reported through on_chunk as a sanity check of the run.
Expected<ImatrixData> collect_imatrix(const std::string& model_path, const std::string& text, const ImatrixOptions& options);

}  // namespace fathom::convert
