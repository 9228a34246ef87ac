// One entry point per subcommand (one file each in src/tools). args excludes the binary and
// subcommand names. Returns the process exit code: 0 ok, 1 runtime error, 2 usage error.
#pragma once

#include <string>
#include <vector>

namespace fathom::tools {

using Args = std::vector<std::string>;

int cmd_run(const Args& args);
int cmd_chat(const Args& args);
int cmd_tokenize(const Args& args);
int cmd_detokenize(const Args& args);
int cmd_logits(const Args& args);
int cmd_inspect(const Args& args);
int cmd_synth(const Args& args);
int cmd_bench(const Args& args);
int cmd_bench_load(const Args& args);  // `fathom bench load`: serving load generator (bench_load.cpp)
int cmd_plan(const Args& args);
int cmd_devices(const Args& args);
int cmd_serve(const Args& args);
int cmd_quantize(const Args& args);
int cmd_convert(const Args& args);
int cmd_imatrix(const Args& args);
int cmd_perplexity(const Args& args);
int cmd_kl_divergence(const Args& args);
int cmd_pull(const Args& args);  // pull.cpp
int cmd_list(const Args& args);  // models.cpp: the model store and running servers
int cmd_rm(const Args& args);
int cmd_show(const Args& args);
int cmd_ps(const Args& args);

}  // namespace fathom::tools
