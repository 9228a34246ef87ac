#include "model/synth.h"

#include <algorithm>
#include <cmath>

#include "model/synth_builder.h"
#include "quant/ftype.h"
#include "quant/quant.h"

namespace fathom {

namespace synth {

double NormalRng::next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // Marsaglia's polar form of Box-Muller: a uniform point (u, v) in the unit disc with s = u^2 + v^2
  // gives two independent N(0, 1) values u*f, v*f with f = sqrt(-2 ln s / s), no sin/cos needed.
  constexpr double kScale = 1.0 / 4503599627370496.0;  // 2^-52: 53 random bits -> [0, 2)
  double u, v, s;
  do {
    u = static_cast<double>(engine_() >> 11) * kScale - 1.0;
    v = static_cast<double>(engine_() >> 11) * kScale - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double f = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * f;
  has_spare_ = true;
  return u * f;
}

uint64_t mix_seed(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

namespace {

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

// A word of lowercase letters for index k in bijective base 26: 0 -> "a", 25 -> "z", 26 -> "aa".
std::string letters(int64_t k) {
  std::string s;
  for (int64_t n = k + 1; n > 0; n = (n - 1) / 26) s.push_back(static_cast<char>('a' + (n - 1) % 26));
  std::reverse(s.begin(), s.end());
  return s;
}

// SentencePiece token types as llama.cpp stores them in tokenizer.ggml.token_type.
enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6 };

}  // namespace

DType weight_type_for_row(DType requested, int64_t n_in) { return quant::fallback_type(requested, n_in); }

SynthBuilder::SynthBuilder(const SynthOptions& options, ThreadPool& pool, bool plan_only)
    : options_(options), pool_(pool), plan_only_(plan_only) {}

bool SynthBuilder::record(const std::string& name, DType dtype, std::vector<int64_t> ne, uint64_t n_bytes) {
  plan_.push_back({name, dtype, std::move(ne), n_bytes});
  if (plan_only_) return false;
  ++n_tensors_;
  total_bytes_ += n_bytes;
  return true;
}

Status SynthBuilder::load_vocab(int64_t preset_n_vocab) {
  n_vocab_ = preset_n_vocab;
  if (options_.vocab_path.empty()) {
    if (n_vocab_ < 3 + 256 + 1)
      return error(ErrorCode::kInvalidArgument,
                   strprintf("a synthetic vocab needs at least 260 tokens (3 special + 256 bytes + 1), preset has %lld",
                             static_cast<long long>(n_vocab_)));
    return Status::ok();
  }
  auto file = gguf::GgufFile::open(options_.vocab_path);
  if (!file) return file.status();
  const gguf::Value* tokens = (*file)->find("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->type != gguf::ValueType::kArray || tokens->array_size() == 0)
    return error(ErrorCode::kInvalidFile,
                 options_.vocab_path + ": no tokenizer.ggml.tokens array; pass a GGUF that carries a vocabulary");
  n_vocab_ = static_cast<int64_t>(tokens->array_size());
  vocab_file_ = std::move(file).value();
  return Status::ok();
}

void SynthBuilder::set_general(const std::string& arch, const std::string& name) {
  writer_.set_string("general.architecture", arch);
  writer_.set_string("general.name", name);
  writer_.set_u32("general.file_type", llama_file_type(main_dtype(), output_dtype()));
  if (traits(main_dtype()).is_quantized || traits(output_dtype()).is_quantized)
    writer_.set_u32("general.quantization_version", 2);
}

void SynthBuilder::set_tokenizer() {
  if (vocab_file_) {
    for (const auto& [key, value] : vocab_file_->metadata())
      if (key.starts_with("tokenizer.")) writer_.set(key, value);
    return;
  }
  std::vector<std::string> tokens;   // [n_vocab] pieces
  std::vector<double> scores;        // [n_vocab] SentencePiece log-probability-like scores
  std::vector<double> types;         // [n_vocab] TokenType
  tokens.reserve(n_vocab_);
  auto add = [&](std::string piece, double score, TokenType type) {
    tokens.push_back(std::move(piece));
    scores.push_back(score);
    types.push_back(type);
  };
  add("<unk>", 0.0, kUnknown);
  add("<s>", 0.0, kControl);
  add("</s>", 0.0, kControl);
  for (int b = 0; b < 256; ++b) add(strprintf("<0x%02X>", b), 0.0, kByte);
  // Fillers: "▁", printable ASCII, then alternately "▁word" and multi-letter "word" pieces
  // (disjoint sets, so every piece is unique), scored so earlier pieces are preferred.
  const std::string space_marker = "\xe2\x96\x81";  // U+2581, SentencePiece's word boundary
  for (int64_t j = 0; static_cast<int64_t>(tokens.size()) < n_vocab_; ++j) {
    std::string piece;
    if (j == 0) {
      piece = space_marker;
    } else if (j <= 94) {
      piece = std::string(1, static_cast<char>('!' + j - 1));
    } else {
      const int64_t k = j - 95;
      piece = (k % 2 == 0) ? space_marker + letters(k / 2) : letters(k / 2 + 26);
    }
    add(std::move(piece), -static_cast<double>(j + 1), kNormal);
  }
  writer_.set_string("tokenizer.ggml.model", "llama");
  writer_.set("tokenizer.ggml.tokens", gguf::Value::make_string_array(std::move(tokens)));
  writer_.set("tokenizer.ggml.scores", gguf::Value::make_array(gguf::ValueType::kFloat32, std::move(scores)));
  writer_.set("tokenizer.ggml.token_type", gguf::Value::make_array(gguf::ValueType::kInt32, std::move(types)));
  writer_.set_u32("tokenizer.ggml.bos_token_id", 1);
  writer_.set_u32("tokenizer.ggml.eos_token_id", 2);
  writer_.set_u32("tokenizer.ggml.unknown_token_id", 0);
  writer_.set_u32("tokenizer.ggml.padding_token_id", 0);
  writer_.set_bool("tokenizer.ggml.add_bos_token", true);
  writer_.set_bool("tokenizer.ggml.add_eos_token", false);
}

void SynthBuilder::add_matrix(const std::string& name, int64_t n_in, int64_t n_out, DType dtype, Init init) {
  const DType stored = weight_type_for_row(dtype, n_in);
  const uint64_t n_bytes = row_size(stored, n_in) * static_cast<uint64_t>(n_out);
  if (!record(name, stored, {n_in, n_out}, n_bytes)) return;
  writer_.add_tensor(name, stored, {n_in, n_out}, [this, name, stored, n_in, n_out, init](uint8_t* dst, size_t size) {
    FATHOM_RETURN_IF_ERROR(fill_rows(name, stored, n_in, n_out, init, dst));
    report_progress(size);
    return Status::ok();
  });
}

void SynthBuilder::add_matrix_stack(const std::string& name, int64_t n_in, int64_t n_out, int64_t n_mat, DType dtype,
                                    Init init) {
  const DType stored = weight_type_for_row(dtype, n_in);
  const int64_t n_rows = n_out * n_mat;  // matrix m's row r is flat row m * n_out + r
  const uint64_t n_bytes = row_size(stored, n_in) * static_cast<uint64_t>(n_rows);
  if (!record(name, stored, {n_in, n_out, n_mat}, n_bytes)) return;
  writer_.add_tensor(name, stored, {n_in, n_out, n_mat}, [this, name, stored, n_in, n_rows, init](uint8_t* dst, size_t size) {
    FATHOM_RETURN_IF_ERROR(fill_rows(name, stored, n_in, n_rows, init, dst));
    report_progress(size);
    return Status::ok();
  });
}

void SynthBuilder::add_f32(const std::string& name, std::vector<int64_t> ne, Init init) {
  int64_t n_rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) n_rows *= ne[i];
  const int64_t n_in = ne[0];
  if (!record(name, DType::F32, ne, static_cast<uint64_t>(n_in * n_rows) * sizeof(float))) return;
  writer_.add_tensor(name, DType::F32, std::move(ne), [this, name, n_in, n_rows, init](uint8_t* dst, size_t size) {
    FATHOM_RETURN_IF_ERROR(fill_rows(name, DType::F32, n_in, n_rows, init, dst));
    report_progress(size);
    return Status::ok();
  });
}

Status SynthBuilder::fill_rows(const std::string& name, DType dtype, int64_t n_in, int64_t n_rows, Init init,
                               uint8_t* dst) {
  if (!quant::can_quantize(dtype))
    return error(ErrorCode::kUnsupported, strprintf("tensor %s: cannot write type %s", name.c_str(), dtype_name(dtype)));
  // Every row has its own generator seeded from (seed, tensor name, row), so the values do not
  // depend on the thread count, and a tensor holds the same values whatever its dtype.
  const uint64_t tensor_seed = mix_seed(options_.seed ^ fnv1a(name));
  const size_t row_bytes = row_size(dtype, n_in);
  pool_.parallel_for(n_rows, 16, [&](int, int64_t begin, int64_t end) {
    std::vector<float> values(static_cast<size_t>(n_in));  // [n_in] one row before quantization
    for (int64_t row = begin; row < end; ++row) {
      NormalRng rng(mix_seed(tensor_seed + static_cast<uint64_t>(row)));
      for (float& v : values) v = init.mean + init.stddev * static_cast<float>(rng.next());
      quant::quantize_row_ref(dtype, values.data(), dst + row_bytes * static_cast<size_t>(row), n_in);
    }
  });
  return Status::ok();
}

void SynthBuilder::report_progress(uint64_t n_bytes) {
  ++tensors_done_;
  bytes_done_ += n_bytes;
  if (options_.on_progress) options_.on_progress(tensors_done_, n_tensors_, bytes_done_, total_bytes_);
}

Status SynthBuilder::write(const std::string& path) {
  tensors_done_ = 0;
  bytes_done_ = 0;
  if (options_.n_split <= 1) return writer_.write(path);
  const bool has_suffix = path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
  return writer_.write_split(has_suffix ? path.substr(0, path.size() - 5) : path, options_.n_split);
}

SynthShape published_shape(const std::string& name, std::string_view preset) {
  const std::optional<ModelPreset> p = find_model_preset(preset);
  FATHOM_CHECK_MSG(p.has_value(), "synth preset names a model missing from model_presets()");
  return {name, p->origin, p->name, p->shape};
}

const SynthShape& find_shape(const std::vector<SynthShape>& shapes, const std::string& name) {
  for (const SynthShape& s : shapes)
    if (s.name == name) return s;
  FATHOM_CHECK_MSG(false, "synth preset not checked against the architecture's list");
  return shapes.front();
}

SynthPresetInfo preset_info(const std::string& arch, const SynthShape& shape, std::string description) {
  if (!shape.origin.empty()) description += " (" + shape.origin + ")";
  return {arch, shape.name, std::move(description), shape.published};
}

namespace {

// The registry: one entry list per architecture file.
std::vector<SynthArchitecture> all_architectures() {
  std::vector<SynthArchitecture> archs = dense_architectures();
  for (SynthArchitecture& a : deepseek_architectures()) archs.push_back(std::move(a));
  return archs;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

}  // namespace synth

std::vector<SynthPresetInfo> synth_presets() {
  std::vector<SynthPresetInfo> out;
  for (const synth::SynthArchitecture& a : synth::all_architectures())
    out.insert(out.end(), a.presets.begin(), a.presets.end());
  return out;
}

std::vector<std::string> synth_architectures() {
  std::vector<std::string> out;
  for (const synth::SynthArchitecture& a : synth::all_architectures()) out.push_back(a.arch);
  return out;
}

uint32_t llama_file_type(DType main, DType output) {
  // The table's file type with this base; a Q6_K output over a lower main type is an _M mix.
  const bool q6_output = output == DType::Q6_K && main != DType::Q6_K;
  std::optional<quant::FileType> pick;
  for (const quant::FileType& f : quant::file_types()) {
    if (f.base != main) continue;
    const std::string_view name = f.name;
    if (!pick || name.ends_with(q6_output ? "_M" : "_S")) pick = f;
  }
  return pick ? static_cast<uint32_t>(pick->id) : 0;
}

namespace {

// Runs the architecture's build for `options` after validating them; plan_only builders record
// the tensors without adding them to the file.
Status build(const SynthOptions& options, synth::SynthBuilder& builder) {
  const std::vector<synth::SynthArchitecture> archs = synth::all_architectures();
  const synth::SynthArchitecture* arch = nullptr;
  for (const synth::SynthArchitecture& a : archs)
    if (a.arch == options.arch) arch = &a;
  if (arch == nullptr)
    return error(ErrorCode::kInvalidArgument, strprintf("unknown architecture '%s' (known: %s)", options.arch.c_str(),
                                                        synth::join_names(synth_architectures()).c_str()));
  std::vector<std::string> preset_names;
  for (const SynthPresetInfo& p : arch->presets) preset_names.push_back(p.name);
  if (std::find(preset_names.begin(), preset_names.end(), options.preset) == preset_names.end())
    return error(ErrorCode::kInvalidArgument, strprintf("unknown preset '%s' for %s (known: %s)", options.preset.c_str(),
                                                        options.arch.c_str(), synth::join_names(preset_names).c_str()));
  for (DType t : {options.dtype, options.output_dtype.value_or(options.dtype)}) {
    // Q8_1 and Q8_K exist only as activation formats for dot products, never as stored weights.
    const bool weight_type = (t == DType::F32 || t == DType::F16 || t == DType::BF16 || traits(t).is_quantized) &&
                             t != DType::Q8_1 && t != DType::Q8_K;
    if (!weight_type || !quant::can_quantize(t))
      return error(ErrorCode::kUnsupported,
                   strprintf("cannot write weights of type %s (use f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, "
                             "q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs, iq3_s, iq3_xxs, iq2_s, iq2_xs, "
                             "iq2_xxs, iq1_m, iq1_s, tq1_0 or tq2_0)",
                             dtype_name(t)));
  }
  if (options.mla_legacy && options.arch != "deepseek2")
    return error(ErrorCode::kInvalidArgument, "--mla-legacy applies to --arch deepseek2 only");
  if (options.n_split < 1)
    return error(ErrorCode::kInvalidArgument, strprintf("--split must be at least 1, got %d", options.n_split));
  if (options.n_layer && *options.n_layer < 1)
    return error(ErrorCode::kInvalidArgument, strprintf("--layers must be at least 1, got %lld",
                                                        static_cast<long long>(*options.n_layer)));
  return arch->build(builder);
}

}  // namespace

Status synth_model(const SynthOptions& options, const std::string& out_path) {
  ThreadPool pool(options.n_threads);
  synth::SynthBuilder builder(options, pool);
  FATHOM_RETURN_IF_ERROR(build(options, builder));
  return builder.write(out_path);
}

Expected<std::vector<SynthTensorInfo>> synth_plan(const SynthOptions& options, const std::string& metadata_path) {
  ThreadPool pool(1);
  SynthOptions one_file = options;  // the metadata file is never split
  one_file.n_split = 1;
  synth::SynthBuilder builder(one_file, pool, /*plan_only=*/true);
  FATHOM_RETURN_IF_ERROR(build(options, builder));
  FATHOM_RETURN_IF_ERROR(builder.write(metadata_path));
  return builder.plan();
}

}  // namespace fathom
