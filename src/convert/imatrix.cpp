#include "convert/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "backend/cpu/cpu_backend.h"
#include "convert/perplexity.h"
#include "core/mapped_file.h"
#include "gguf/gguf.h"
#include "model/architecture.h"
#include "model/model.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace fathom::convert {

ImatrixCollector::ImatrixCollector(Backend& inner, const gguf::GgufFile& file, std::vector<std::string> skip)
    : ForwardingBackend(inner), file_(file), skip_(std::move(skip)) {}

void ImatrixCollector::matmul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  inner().matmul(w, x, n_tokens, y);
  if (n_tokens <= 0 || std::find(skip_.begin(), skip_.end(), w.name) != skip_.end()) return;
  const gguf::TensorInfo* full = file_.find_tensor(w.name);
  if (full == nullptr || full->view.ne[0] != w.ne[0]) return;  // a derived copy, not a file weight
  // Which matrix of the file tensor this view lies in: experts and per-head MLA matrices are
  // multiplied one slice at a time, each slice inside matrix (offset / matrix bytes).
  const TensorView& fv = full->view;
  const int64_t n_mat = fv.ne[2] * fv.ne[3];
  const size_t matrix_bytes = fv.row_bytes() * static_cast<size_t>(fv.ne[1]);
  const auto* base = static_cast<const uint8_t*>(fv.data);
  const auto* at = static_cast<const uint8_t*>(w.data);
  if (at < base || at >= base + fv.n_bytes()) return;
  const int64_t mat = static_cast<int64_t>(static_cast<size_t>(at - base) / matrix_bytes);
  ImatrixEntry& e = data_.entries[w.name];
  const int64_t n_in = w.ne[0];
  inner().sync_to_host(x, n_tokens * n_in);  // the inner backend may hold x in device memory
  if (e.in_sum2.empty()) {
    e.n_in = n_in;
    e.in_sum2.assign(static_cast<size_t>(n_in * n_mat), 0.0);
    e.counts.assign(static_cast<size_t>(n_mat), 0.0);
  }
  double* sums = e.in_sum2.data() + mat * n_in;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* row = x + t * n_in;
    for (int64_t j = 0; j < n_in; ++j) sums[j] += static_cast<double>(row[j]) * row[j];
  }
  e.counts[static_cast<size_t>(mat)] += static_cast<double>(n_tokens);
}

namespace {

Status write_legacy(const ImatrixData& data, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) return error(ErrorCode::kIo, "cannot open " + path + " for writing");
  auto put_i32 = [&](int32_t v) { out.write(reinterpret_cast<const char*>(&v), sizeof v); };
  put_i32(static_cast<int32_t>(data.entries.size()));
  // ncall is the chunk count; values are mean x^2 scaled by it, which readers divide back out.
  const int32_t ncall = static_cast<int32_t>(std::max<int64_t>(1, data.chunk_count));
  for (const auto& [name, e] : data.entries) {
    put_i32(static_cast<int32_t>(name.size()));
    out.write(name.data(), static_cast<std::streamsize>(name.size()));
    put_i32(ncall);
    put_i32(static_cast<int32_t>(e.in_sum2.size()));
    for (size_t i = 0; i < e.in_sum2.size(); ++i) {
      const double count = e.counts[i / static_cast<size_t>(e.n_in)];
      const float v = static_cast<float>(count > 0 ? e.in_sum2[i] / count * ncall : 0.0);
      out.write(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  put_i32(ncall);
  const std::string dataset = data.datasets.empty() ? "" : data.datasets.front();
  put_i32(static_cast<int32_t>(dataset.size()));
  out.write(dataset.data(), static_cast<std::streamsize>(dataset.size()));
  if (!out) return error(ErrorCode::kIo, "write failed: " + path);
  return Status::ok();
}

std::vector<uint8_t> f32_bytes(const std::vector<double>& v) {
  std::vector<uint8_t> bytes(v.size() * sizeof(float));
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = static_cast<float>(v[i]);
    std::memcpy(bytes.data() + i * sizeof(float), &f, sizeof f);
  }
  return bytes;
}

Expected<ImatrixFile> read_legacy(const MappedFile& f) {
  size_t pos = 0;
  auto get_i32 = [&](int32_t* v) {
    if (f.size() - pos < 4) return false;
    std::memcpy(v, f.data() + pos, 4);
    pos += 4;
    return true;
  };
  auto bad = [&](const char* what) {
    return error(ErrorCode::kInvalidFile, strprintf("%s: legacy imatrix %s at byte %zu", f.path().c_str(), what, pos));
  };
  int32_t n_entries = 0;
  if (!get_i32(&n_entries) || n_entries < 0) return bad("has no valid entry count");
  ImatrixFile out;
  for (int32_t i = 0; i < n_entries; ++i) {
    int32_t len = 0, ncall = 0, nval = 0;
    if (!get_i32(&len) || len <= 0 || static_cast<size_t>(len) > f.size() - pos) return bad("has a bad name length");
    std::string name(reinterpret_cast<const char*>(f.data() + pos), static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
    if (!get_i32(&ncall) || !get_i32(&nval) || nval <= 0) return bad("has a bad value count");
    if (static_cast<size_t>(nval) > (f.size() - pos) / sizeof(float)) return bad("is truncated");
    std::vector<float> values(static_cast<size_t>(nval));
    std::memcpy(values.data(), f.data() + pos, values.size() * sizeof(float));
    pos += values.size() * sizeof(float);
    if (ncall > 0)
      for (float& v : values) v /= static_cast<float>(ncall);
    out.values[name] = std::move(values);
  }
  int32_t chunks = 0;
  if (get_i32(&chunks)) out.chunk_count = chunks;
  return out;
}

Expected<ImatrixFile> read_gguf_imatrix(const gguf::GgufFile& g) {
  ImatrixFile out;
  out.chunk_count = g.get_int("imatrix.chunk_count").value_or(0);
  if (const gguf::Value* d = g.find("imatrix.datasets")) out.datasets = d->strings;
  for (const gguf::TensorInfo& t : g.tensors()) {
    const std::string& n = t.view.name;
    if (!n.ends_with(".in_sum2")) continue;
    const std::string base = n.substr(0, n.size() - 8);
    const gguf::TensorInfo* counts = g.find_tensor(base + ".counts");
    if (counts == nullptr)
      return error(ErrorCode::kInvalidFile, g.path() + ": imatrix tensor " + n + " has no matching .counts tensor");
    const int64_t n_in = t.view.ne[0], n_mat = t.view.ne[1];
    if (t.view.dtype != DType::F32 || counts->view.dtype != DType::F32 || counts->view.n_elements() != n_mat)
      return error(ErrorCode::kInvalidFile, g.path() + ": imatrix tensors of " + base + " must be F32 with one count per matrix");
    const auto* sums = static_cast<const float*>(t.view.data);
    const auto* cnt = static_cast<const float*>(counts->view.data);
    std::vector<float> values(static_cast<size_t>(n_in * n_mat));
    for (int64_t m = 0; m < n_mat; ++m)
      for (int64_t j = 0; j < n_in; ++j)
        // A matrix never reached (an unused expert) gets neutral weights rather than zeros.
        values[static_cast<size_t>(m * n_in + j)] = cnt[m] > 0 ? sums[m * n_in + j] / cnt[m] : 1.0f;
    out.values[base] = std::move(values);
  }
  return out;
}

}  // namespace

Status write_imatrix(const ImatrixData& data, const std::string& path) {
  if (path.ends_with(".dat")) return write_legacy(data, path);
  gguf::GgufWriter w;
  w.set_string("general.type", "imatrix");
  w.set("imatrix.datasets", gguf::Value::make_string_array(data.datasets));
  w.set_u32("imatrix.chunk_count", static_cast<uint32_t>(data.chunk_count));
  w.set_u32("imatrix.chunk_size", static_cast<uint32_t>(data.chunk_size));
  std::vector<std::string> names;
  for (const auto& [name, e] : data.entries) names.push_back(name);
  std::sort(names.begin(), names.end(), quant::llama_tensor_order);
  for (const std::string& name : names) {
    const ImatrixEntry& e = data.entries.find(name)->second;
    const int64_t n_mat = static_cast<int64_t>(e.counts.size());
    w.add_tensor_bytes(name + ".in_sum2", DType::F32, {e.n_in, n_mat}, f32_bytes(e.in_sum2));
    w.add_tensor_bytes(name + ".counts", DType::F32, {1, n_mat}, f32_bytes(e.counts));
  }
  return w.write(path);
}

Expected<ImatrixFile> read_imatrix(const std::string& path) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> f, MappedFile::open(path));
  if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0) {
    FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> g, gguf::GgufFile::parse(std::move(f)));
    return read_gguf_imatrix(*g);
  }
  return read_legacy(*f);
}

Expected<ImatrixData> collect_imatrix(const std::string& model_path, const std::string& text, const ImatrixOptions& options) {
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::open(model_path, options.map));
  FATHOM_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::from_gguf(*file));
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<Architecture> arch, make_architecture(config, *file));
  FATHOM_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::from_gguf(*file));
  FATHOM_ASSIGN_OR_RETURN(ChunkedText chunks, chunk_text(*tok, text, options.n_ctx, options.n_chunks, config.n_vocab));

  CpuBackend cpu(options.n_threads);
  std::vector<std::string> skip;
  if (!options.process_output) skip.push_back("output.weight");
  ImatrixCollector collector(cpu, *file, skip);
  const KvCacheShape shape = arch->kv_shape(options.n_ctx);
  FATHOM_ASSIGN_OR_RETURN(const int64_t n_blocks, kv_pool_blocks(options.n_ctx, shape.block_size, 1));
  FATHOM_RETURN_IF_ERROR(check_pool_addressable(n_blocks, shape.block_size));
  KvCache kv(shape, static_cast<int32_t>(n_blocks));
  std::vector<float> logits;
  NllStats nll;
  for (int64_t c = 0; c < chunks.n_chunks; ++c) {
    const Batch batch = chunks.batch(c);
    kv.free_sequence(0);
    FATHOM_RETURN_IF_ERROR(kv.reserve(0, options.n_ctx));
    logits.resize(static_cast<size_t>(batch.n_logits() * config.n_vocab));
    FATHOM_RETURN_IF_ERROR(run_forward(*arch, collector, batch, kv, config.n_vocab, logits.data()));
    chunks.score(c, logits.data(), config.n_vocab, &nll);
    if (options.on_chunk) options.on_chunk(c + 1, chunks.n_chunks, nll.perplexity());
  }
  ImatrixData data = std::move(collector.data());
  data.chunk_count = chunks.n_chunks;
  data.chunk_size = options.n_ctx;
  return data;
}

}  // namespace fathom::convert
