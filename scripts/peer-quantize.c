// Quantizes a GGUF with llama.cpp's own quantizer (llama_model_quantize in the peer's prebuilt
// libllama.so, see scripts/peer-quantize.sh), optionally with an importance matrix from
// `fathom imatrix` (GGUF: W.in_sum2 / W.counts; or legacy .dat), which it hands to llama.cpp
// in-process as llama-quantize does: per weight, the mean of x^2 per column and matrix.
//
// Only the C API symbols used here are declared. llama_model_quantize_params must match the
// llama.cpp the peer ships: node-llama-cpp 3.22.1's bundled llama.cpp (release tag v0.5.0 in
// its llama/llama.cpp.info.json, include/llama.h of its gitRelease.bundle). The script checks
// the library's version string before running this.
//
// usage: peer-quantize IN.gguf OUT.gguf FTYPE [IMATRIX] [THREADS]
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// ---- llama.h / gguf.h declarations (the peer's version) ----
struct llama_model_imatrix_data {
  const char* name;   // tensor name; NULL ends the array
  const float* data;  // [size] mean x^2 per column, matrix after matrix
  size_t size;
};

typedef struct llama_model_quantize_params {
  int32_t nthread;
  int ftype;                 // enum llama_ftype
  int output_tensor_type;    // enum ggml_type
  int token_embedding_type;  // enum ggml_type
  bool allow_requantize;
  bool quantize_output_tensor;
  bool only_copy;
  bool pure;
  bool keep_split;
  bool dry_run;
  const struct llama_model_imatrix_data* imatrix;
  const void* kv_overrides;
  const void* tt_overrides;
  const int32_t* prune_layers;
  size_t max_buf_size;
} llama_model_quantize_params;

void llama_backend_init(void);
void llama_backend_free(void);
llama_model_quantize_params llama_model_quantize_default_params(void);
uint32_t llama_model_quantize(const char* fname_inp, const char* fname_out, const llama_model_quantize_params* params);

struct gguf_context;
struct gguf_init_params {
  bool no_alloc;
  void** ctx;  // struct ggml_context**; NULL: metadata only
};
struct gguf_context* gguf_init_from_file(const char* fname, struct gguf_init_params params);
void gguf_free(struct gguf_context* ctx);
size_t gguf_get_data_offset(const struct gguf_context* ctx);
int64_t gguf_get_n_tensors(const struct gguf_context* ctx);
size_t gguf_get_tensor_offset(const struct gguf_context* ctx, int64_t tensor_id);
const char* gguf_get_tensor_name(const struct gguf_context* ctx, int64_t tensor_id);
size_t gguf_get_tensor_size(const struct gguf_context* ctx, int64_t tensor_id);
int64_t gguf_find_tensor(const struct gguf_context* ctx, const char* name);

// ---- LLAMA_FTYPE_* by name ----
struct ftype_name {
  const char* name;
  int id;
};
static const struct ftype_name kFtypes[] = {
    {"F32", 0},      {"F16", 1},      {"Q4_0", 2},     {"Q4_1", 3},     {"Q8_0", 7},     {"Q5_0", 8},
    {"Q5_1", 9},     {"Q2_K", 10},    {"Q3_K_S", 11},  {"Q3_K_M", 12},  {"Q3_K_L", 13},  {"Q4_K_S", 14},
    {"Q4_K_M", 15},  {"Q5_K_S", 16},  {"Q5_K_M", 17},  {"Q6_K", 18},    {"IQ2_XXS", 19}, {"IQ2_XS", 20},
    {"Q2_K_S", 21},  {"IQ3_XS", 22},  {"IQ3_XXS", 23}, {"IQ1_S", 24},   {"IQ4_NL", 25},  {"IQ3_S", 26},
    {"IQ3_M", 27},   {"IQ2_S", 28},   {"IQ2_M", 29},   {"IQ4_XS", 30},  {"IQ1_M", 31},   {"BF16", 32},
    {"TQ1_0", 36},   {"TQ2_0", 37},
};

static void die(const char* what, const char* detail) {
  fprintf(stderr, "peer-quantize: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static void* read_bytes(FILE* f, size_t offset, size_t n) {
  void* buf = malloc(n ? n : 1);
  if (!buf || fseek(f, (long)offset, SEEK_SET) != 0 || fread(buf, 1, n, f) != n) die("cannot read imatrix data", NULL);
  return buf;
}

// The GGUF imatrix: for each weight W, W.in_sum2 [n_in * n_mat] sums of x^2 and W.counts [n_mat]
// tokens seen; llama.cpp wants sum / count (1 where a matrix saw no tokens).
static struct llama_model_imatrix_data* load_gguf_imatrix(const char* path) {
  struct gguf_init_params gp = {true, NULL};
  struct gguf_context* ctx = gguf_init_from_file(path, gp);
  if (!ctx) die("not a GGUF imatrix", path);
  FILE* f = fopen(path, "rb");
  if (!f) die("cannot open", path);
  const int64_t n = gguf_get_n_tensors(ctx);
  struct llama_model_imatrix_data* out = calloc((size_t)n + 1, sizeof *out);
  size_t n_out = 0;
  const char* suffix = ".in_sum2";
  for (int64_t i = 0; i < n; ++i) {
    const char* name = gguf_get_tensor_name(ctx, i);
    const size_t len = strlen(name), slen = strlen(suffix);
    if (len <= slen || strcmp(name + len - slen, suffix) != 0) continue;
    char* weight = strndup(name, len - slen);
    char counts_name[512];
    snprintf(counts_name, sizeof counts_name, "%s.counts", weight);
    const int64_t ic = gguf_find_tensor(ctx, counts_name);
    if (ic < 0) die("imatrix entry without counts", weight);
    const size_t n_sum = gguf_get_tensor_size(ctx, i) / sizeof(float);
    const size_t n_mat = gguf_get_tensor_size(ctx, ic) / sizeof(float);
    if (n_mat == 0 || n_sum % n_mat != 0) die("imatrix entry with inconsistent sizes", weight);
    const size_t base = gguf_get_data_offset(ctx);
    float* sums = read_bytes(f, base + gguf_get_tensor_offset(ctx, i), n_sum * sizeof(float));
    float* counts = read_bytes(f, base + gguf_get_tensor_offset(ctx, ic), n_mat * sizeof(float));
    const size_t n_in = n_sum / n_mat;
    for (size_t m = 0; m < n_mat; ++m)
      for (size_t c = 0; c < n_in; ++c) sums[m * n_in + c] = counts[m] > 0 ? sums[m * n_in + c] / counts[m] : 1.0f;
    free(counts);
    out[n_out++] = (struct llama_model_imatrix_data){weight, sums, n_sum};
  }
  fclose(f);
  gguf_free(ctx);
  if (n_out == 0) die("no W.in_sum2 entries in the imatrix", path);
  return out;
}

// The legacy .dat: int32 n_entries; per entry int32 name length, name, int32 ncall, int32 nval,
// float values[nval] (mean x^2 * ncall); llama.cpp wants values / ncall.
static struct llama_model_imatrix_data* load_dat_imatrix(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) die("cannot open", path);
  int32_t n = 0;
  if (fread(&n, sizeof n, 1, f) != 1 || n <= 0 || n > 1000000) die("bad imatrix header", path);
  struct llama_model_imatrix_data* out = calloc((size_t)n + 1, sizeof *out);
  for (int32_t i = 0; i < n; ++i) {
    int32_t len = 0, ncall = 0, nval = 0;
    if (fread(&len, sizeof len, 1, f) != 1 || len <= 0 || len > 4096) die("bad imatrix entry name", path);
    char* name = calloc((size_t)len + 1, 1);
    if (fread(name, 1, (size_t)len, f) != (size_t)len || fread(&ncall, sizeof ncall, 1, f) != 1 ||
        fread(&nval, sizeof nval, 1, f) != 1 || nval <= 0)
      die("bad imatrix entry", path);
    float* values = malloc((size_t)nval * sizeof(float));
    if (fread(values, sizeof(float), (size_t)nval, f) != (size_t)nval) die("truncated imatrix", path);
    if (ncall > 0)
      for (int32_t j = 0; j < nval; ++j) values[j] /= (float)ncall;
    out[i] = (struct llama_model_imatrix_data){name, values, (size_t)nval};
  }
  fclose(f);
  return out;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 6) {
    fprintf(stderr, "usage: %s IN.gguf OUT.gguf FTYPE [IMATRIX|-] [THREADS]\nFTYPE:", argv[0]);
    for (size_t i = 0; i < sizeof kFtypes / sizeof kFtypes[0]; ++i) fprintf(stderr, " %s", kFtypes[i].name);
    fprintf(stderr, "\n");
    return 2;
  }
  int ftype = -1;
  for (size_t i = 0; i < sizeof kFtypes / sizeof kFtypes[0]; ++i)
    if (strcasecmp(argv[3], kFtypes[i].name) == 0) ftype = kFtypes[i].id;
  if (ftype < 0) die("unknown ftype", argv[3]);
  llama_backend_init();
  llama_model_quantize_params params = llama_model_quantize_default_params();
  params.ftype = ftype;
  params.nthread = argc > 5 ? atoi(argv[5]) : 0;
  if (argc > 4 && strcmp(argv[4], "-") != 0) {
    const char* path = argv[4];
    const size_t len = strlen(path);
    params.imatrix = len > 4 && strcmp(path + len - 4, ".dat") == 0 ? load_dat_imatrix(path) : load_gguf_imatrix(path);
  }
  const uint32_t rc = llama_model_quantize(argv[1], argv[2], &params);
  llama_backend_free();
  if (rc != 0) {
    fprintf(stderr, "peer-quantize: llama_model_quantize failed (%u)\n", rc);
    return 1;
  }
  return 0;
}
