// Activation residency: the table a device backend keeps of which activation ranges live in its
// memory (backend/residency.h), against a plain model of the values, and the protocol the
// architectures keep with it (Backend::sync_to_host / host_wrote / end_forward): a forward pass
// through a backend whose op outputs stay in its own memory, host copies NaN until synced
// (../shadow_backend.h), must give the CPU backend's logits bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/residency.h"
#include "gguf/gguf.h"
#include "model/architecture.h"
#include "model/config.h"
#include "model/model.h"
#include "model/synth.h"
#include "../backend_op_checks.h"
#include "../shadow_backend.h"

namespace fathom {
namespace {

using testing_support::HeapDevice;
using testing_support::ShadowBackend;

float* at(uintptr_t a) { return reinterpret_cast<float*>(a); }

TEST(ResidencyTable, InputsUploadOnceAndOutputsStayOnTheDeviceUntilAsked) {
  HeapDevice dev;
  std::vector<float> host(64);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i);
  {
    ResidencyTable<HeapDevice> t(dev);
    auto in = t.input(host.data(), 16 * sizeof(float));
    ASSERT_TRUE(in);
    EXPECT_EQ(at(*in)[5], 5.0f);
    EXPECT_EQ(t.stats().uploaded_bytes, 16 * sizeof(float));
    auto again = t.input(host.data() + 4, 8 * sizeof(float));  // inside the first: no transfer
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *in + 4 * sizeof(float));
    EXPECT_EQ(t.stats().uploaded_bytes, 16 * sizeof(float));
    EXPECT_EQ(t.stats().resident_reads, 1u);

    auto out = t.output(host.data() + 32, 8 * sizeof(float));
    ASSERT_TRUE(out);
    for (int i = 0; i < 8; ++i) at(*out)[i] = -1.0f - static_cast<float>(i);
    EXPECT_TRUE(t.device_newer(host.data() + 36, sizeof(float)));
    EXPECT_FALSE(t.device_newer(host.data(), 16 * sizeof(float)));
    EXPECT_EQ(host[33], 33.0f);  // not written back yet
    ASSERT_TRUE(t.to_host(host.data() + 34, sizeof(float)).is_ok());  // syncs the whole entry
    EXPECT_EQ(host[33], -2.0f);
    EXPECT_EQ(host[39], -8.0f);
    EXPECT_FALSE(t.device_newer(host.data() + 32, 8 * sizeof(float)));
    EXPECT_EQ(t.stats().downloaded_bytes, 8 * sizeof(float));

    host[0] = 100.0f;  // a host write reaches the device copy once announced
    ASSERT_TRUE(t.host_wrote(host.data(), sizeof(float)).is_ok());
    auto first = t.input(host.data(), 4 * sizeof(float));
    ASSERT_TRUE(first);
    EXPECT_EQ(at(*first)[0], 100.0f);
    EXPECT_EQ(t.size(), 2u);
    t.clear();
    t.end_op();
    EXPECT_EQ(t.size(), 0u);
  }
  EXPECT_EQ(dev.live(), 0);  // every buffer went back
}

TEST(ResidencyTable, RequestsAcrossEntriesMergeThemWithoutAHostRoundTrip) {
  HeapDevice dev;
  std::vector<float> host(40, 7.0f);
  ResidencyTable<HeapDevice> t(dev);
  // Two products write the halves of one buffer; a third op reads the whole of it, and past it.
  auto a = t.output(host.data(), 10 * sizeof(float));
  auto b = t.output(host.data() + 20, 10 * sizeof(float));
  ASSERT_TRUE(a && b);
  for (int i = 0; i < 10; ++i) {
    at(*a)[i] = 1.0f;
    at(*b)[i] = 2.0f;
  }
  t.end_op();
  auto all = t.input(host.data(), 40 * sizeof(float));
  ASSERT_TRUE(all);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(at(*all)[3], 1.0f);
  EXPECT_EQ(at(*all)[15], 7.0f);  // the gap came from the host
  EXPECT_EQ(at(*all)[25], 2.0f);
  EXPECT_EQ(at(*all)[35], 7.0f);
  EXPECT_EQ(t.stats().downloaded_bytes, 0u);
  EXPECT_EQ(t.stats().merged_bytes, 20 * sizeof(float));
  EXPECT_EQ(t.stats().uploaded_bytes, 20 * sizeof(float));
  EXPECT_TRUE(t.device_newer(host.data(), 40 * sizeof(float)));  // the merged halves are still only there
  t.end_op();
  EXPECT_EQ(dev.live(), 1);
}

TEST(ResidencyTable, ResolvingAnOpTwiceKeepsEveryAddressValid) {
  HeapDevice dev;
  std::vector<float> host(32, 3.0f);
  ResidencyTable<HeapDevice> t(dev);
  ASSERT_TRUE(t.output(host.data() + 8, 8 * sizeof(float)));
  t.end_op();
  // The first request lands in the existing entry; the second grows it, moving the first.
  uintptr_t x = 0, y = 0;
  int passes = 0;
  ASSERT_TRUE(t.resolve_op([&]() -> Status {
                 ++passes;
                 FATHOM_ASSIGN_OR_RETURN(x, t.input(host.data() + 8, 4 * sizeof(float)));
                 FATHOM_ASSIGN_OR_RETURN(y, t.output(host.data(), 12 * sizeof(float)));
                 return Status::ok();
               }).is_ok());
  EXPECT_EQ(passes, 2);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(y + 8 * sizeof(float), x);  // both in the one entry that remains
}

// Random ops against a model of the values: every device read sees the latest value, every
// synced host read too, whatever mix of outputs, in-place updates, host writes and merges led there.
TEST(ResidencyTable, RandomOpsAlwaysSeeTheLatestValues) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    HeapDevice dev;
    std::mt19937 rng(seed);
    const int n = 256;
    std::vector<float> host(n), truth(n);
    for (int i = 0; i < n; ++i) host[i] = truth[i] = static_cast<float>(i);
    ResidencyTable<HeapDevice> t(dev);
    auto range = [&](int& begin, int& count) {
      begin = static_cast<int>(rng() % n);
      count = 1 + static_cast<int>(rng() % std::min(64, n - begin));
    };
    float next = 1000.0f;
    for (int step = 0; step < 400; ++step) {
      int b = 0, c = 0;
      range(b, c);
      const size_t bytes = static_cast<size_t>(c) * sizeof(float);
      switch (rng() % 5) {
        case 0: {  // an op writes [b, b + c)
          auto d = t.output(host.data() + b, bytes);
          ASSERT_TRUE(d);
          for (int i = 0; i < c; ++i) at(*d)[i] = truth[b + i] = next++;
          for (int i = 0; i < c; ++i) host[b + i] = NAN;
          break;
        }
        case 1: {  // an op updates in place
          auto d = t.update(host.data() + b, bytes);
          ASSERT_TRUE(d);
          for (int i = 0; i < c; ++i) {
            ASSERT_EQ(at(*d)[i], truth[b + i]) << "seed " << seed << " step " << step;
            at(*d)[i] = truth[b + i] = truth[b + i] + 0.5f;
            host[b + i] = NAN;
          }
          break;
        }
        case 2: {  // an op reads
          auto d = t.input(host.data() + b, bytes);
          ASSERT_TRUE(d);
          for (int i = 0; i < c; ++i) ASSERT_EQ(at(*d)[i], truth[b + i]) << "seed " << seed << " step " << step;
          break;
        }
        case 3: {  // the host reads
          ASSERT_TRUE(t.to_host(host.data() + b, bytes).is_ok());
          for (int i = 0; i < c; ++i) ASSERT_EQ(host[b + i], truth[b + i]) << "seed " << seed << " step " << step;
          break;
        }
        default: {  // the host writes
          for (int i = 0; i < c; ++i) host[b + i] = truth[b + i] = next++;
          ASSERT_TRUE(t.host_wrote(host.data() + b, bytes).is_ok());
          break;
        }
      }
      t.end_op();
    }
    ASSERT_TRUE(t.to_host(host.data(), n * sizeof(float)).is_ok());
    for (int i = 0; i < n; ++i) ASSERT_EQ(host[i], truth[i]) << "seed " << seed;
    t.clear();
    t.end_op();
    EXPECT_EQ(dev.live(), 0);
  }
}

// The device checks' own residency steps (../backend_op_checks.h), on the shadow device: the
// CPU's kernels, so exact.
TEST(ResidencyChecks, BiasStridedCopyMoeOpsAndAChainWithoutSyncs) {
  ShadowBackend shadow(2);
  CpuBackend cpu(2);
  test::check_bias_and_strided_copy(shadow, cpu);
  test::check_op_chain(shadow, cpu, 1e-30);
  test::check_top_candidates(shadow, cpu);
  test::check_moe_ops(shadow);
  EXPECT_EQ(shadow.live_buffers(), 0);
}

// --- the architectures keep the protocol -----------------------------------------------------

std::string synth(const std::string& arch, const std::string& preset) {
  SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.seed = 9;
  o.n_threads = 2;
  const std::string path = std::string(FATHOM_TEST_TMP) + "/residency-" + arch + "-" + preset + ".gguf";
  const Status st = synth_model(o, path);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return path;
}

// A synth model opened and bound; arch is null (after a failed expectation) when it could not be.
struct SynthModel {
  std::unique_ptr<gguf::GgufFile> file;
  ModelConfig config;
  std::unique_ptr<Architecture> arch;
};

SynthModel load_synth(const std::string& arch, const std::string& preset) {
  SynthModel m;
  auto file = gguf::GgufFile::open(synth(arch, preset));
  EXPECT_TRUE(file) << file.status().to_string();
  if (!file) return m;
  m.file = std::move(file).value();
  auto config = ModelConfig::from_gguf(*m.file);
  EXPECT_TRUE(config) << config.status().to_string();
  if (!config) return m;
  m.config = *config;
  auto a = make_architecture(m.config, *m.file);
  EXPECT_TRUE(a) << a.status().to_string();
  if (a) m.arch = std::move(a).value();
  return m;
}

// Two sequences: prefills of different lengths with logits on some rows only, then decode
// steps of both in one batch; every logit row of every step.
std::vector<float> run(Architecture& arch, Backend& be, const KvCacheShape& shape, int64_t n_vocab) {
  KvCache kv(shape, 16);
  std::vector<float> all;
  auto step = [&](const Batch& b) {
    for (int64_t i = 0; i < b.size(); ++i) {
      const int32_t seq = b.seq_ids[static_cast<size_t>(i)];
      EXPECT_TRUE(kv.reserve(seq, b.positions[static_cast<size_t>(i)] + 1).is_ok());
    }
    std::vector<float> logits(static_cast<size_t>(b.n_logits() * n_vocab));
    EXPECT_TRUE(run_forward(arch, be, b, kv, n_vocab, logits.data()).is_ok());
    all.insert(all.end(), logits.begin(), logits.end());
  };
  Batch prefill;
  for (int32_t i = 0; i < 7; ++i) prefill.add((i * 31 + 3) % static_cast<int32_t>(n_vocab), i, 0, i == 6 || i == 2);
  for (int32_t i = 0; i < 4; ++i) prefill.add((i * 17 + 5) % static_cast<int32_t>(n_vocab), i, 1, i == 3);
  step(prefill);
  for (int32_t s = 0; s < 3; ++s) {
    Batch decode;
    decode.add((s * 13 + 1) % static_cast<int32_t>(n_vocab), 7 + s, 0, true);
    decode.add((s * 29 + 2) % static_cast<int32_t>(n_vocab), 4 + s, 1, true);
    step(decode);
  }
  return all;
}

struct ArchCase {
  const char* arch;
  const char* preset;
};

void PrintTo(const ArchCase& c, std::ostream* os) { *os << c.arch << " " << c.preset; }

class ResidencyProtocol : public ::testing::TestWithParam<ArchCase> {};

TEST_P(ResidencyProtocol, LogitsAreTheCpusWhenActivationsStayOnTheDevice) {
  const ArchCase& c = GetParam();
  const SynthModel m = load_synth(c.arch, c.preset);
  ASSERT_TRUE(m.arch);
  const KvCacheShape shape = m.arch->kv_shape(64);

  CpuBackend cpu(2);
  const std::vector<float> want = run(*m.arch, cpu, shape, m.config.n_vocab);
  ShadowBackend shadow(2);
  const std::vector<float> got = run(*m.arch, shadow, shape, m.config.n_vocab);

  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "logit " << i;  // NaN if a stale host copy was read
  // Activations did stay: most op inputs were found on the device, and nothing outlives a pass.
  const ResidencyStats& s = shadow.stats();
  EXPECT_GT(s.resident_reads * 2, s.inputs) << s.resident_reads << " of " << s.inputs << " inputs resident";
  EXPECT_EQ(shadow.entries(), 0u);
  EXPECT_EQ(shadow.live_buffers(), 0);
}

// A pass whose work the device lost (a failed CUDA graph: end_forward says false) is run again,
// which rewrites its KV rows: the logits of that pass and of every later one are the CPU's.
TEST(RunForward, APassTheDeviceLostRunsAgain) {
  for (const char* arch_name : {"llama", "deepseek2"}) {
    const SynthModel m = load_synth(arch_name, "tiny");
    ASSERT_TRUE(m.arch);
    const KvCacheShape shape = m.arch->kv_shape(64);
    CpuBackend cpu(2);
    const std::vector<float> want = run(*m.arch, cpu, shape, m.config.n_vocab);
    for (int64_t lost : {1, 2}) {  // the prefill, then the first decode step
      ShadowBackend shadow(2);
      shadow.lose_pass = lost;
      const std::vector<float> got = run(*m.arch, shadow, shape, m.config.n_vocab);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << arch_name << ": pass " << lost << " lost, logit " << i;
    }
    ShadowBackend broken(2);
    broken.lose_every_pass = true;
    KvCache kv(shape, 16);
    Batch b;
    b.add(1, 0, 0, true);
    ASSERT_TRUE(kv.reserve(0, 1).is_ok());
    std::vector<float> logits(static_cast<size_t>(m.config.n_vocab));
    const Status st = run_forward(*m.arch, broken, b, kv, m.config.n_vocab, logits.data());
    EXPECT_EQ(st.code(), ErrorCode::kUnavailable);
    EXPECT_NE(st.message().find("lost the forward pass twice"), std::string::npos) << st.message();
  }
}

// Greedy and top-k sampling ask only for each row's largest logits: through the device they
// are the largest of the CPU's rows (ids and values exact), and the rows never come back whole.
TEST(RunForward, TopLogitsAreTheLargestOfTheRows) {
  const SynthModel m = load_synth("qwen2", "tiny");
  ASSERT_TRUE(m.arch);
  const int64_t n_vocab = m.config.n_vocab;
  Batch b;
  for (int32_t i = 0; i < 6; ++i) b.add((i * 31 + 3) % static_cast<int32_t>(n_vocab), i, 0, i >= 3);
  CpuBackend cpu(2);
  KvCache kv_cpu(m.arch->kv_shape(64), 16), kv_dev(m.arch->kv_shape(64), 16);
  ASSERT_TRUE(kv_cpu.reserve(0, 6).is_ok());
  ASSERT_TRUE(kv_dev.reserve(0, 6).is_ok());
  std::vector<float> rows(static_cast<size_t>(3 * n_vocab)), named(rows.size());
  ASSERT_TRUE(run_forward(*m.arch, cpu, b, kv_cpu, n_vocab, rows.data()).is_ok());
  ShadowBackend shadow(2);
  TopLogits top;
  top.k = 40;
  ASSERT_TRUE(run_forward(*m.arch, shadow, b, kv_dev, n_vocab, named.data(), &top).is_ok());
  EXPECT_EQ(shadow.top_calls, 1);
  EXPECT_TRUE(std::isnan(named[0])) << "the rows stayed on the device";
  std::vector<int32_t> want_ids(static_cast<size_t>(3 * 40));
  std::vector<float> want(want_ids.size());
  cpu.top_candidates(rows.data(), 3, n_vocab, 40, want_ids.data(), want.data());
  EXPECT_EQ(top.ids, want_ids);
  EXPECT_EQ(top.values, want);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ResidencyProtocol,
                         ::testing::Values(ArchCase{"llama", "tiny"}, ArchCase{"qwen2", "tiny"}, ArchCase{"deepseek", "tiny"},
                                           ArchCase{"deepseek2", "tiny"}, ArchCase{"deepseek2", "tiny-v3"}),
                         [](const ::testing::TestParamInfo<ArchCase>& info) {
                           std::string name = std::string(info.param.arch) + "_" + info.param.preset;
                           for (char& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

}  // namespace
}  // namespace fathom
