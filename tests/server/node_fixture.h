// Running the npm clients of the server tests: node scripts beside a node_modules installed
// once per test into FATHOM_TEST_TMP/<dir>. Without node, npm or the registry a test is
// skipped, saying why.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace fathom::server::test {

// Runs a shell command; its exit status and combined output.
inline int run_command(const std::string& command, std::string* output) {
  std::FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Installs `packages` into FATHOM_TEST_TMP/<dir> unless present, and copies the test script
// tests/server/<script> there (node resolves its imports from the node_modules beside it).
// Tests sharing a dir run in parallel under ctest -j: an flock on <dir>/.lock makes one install
// while the others wait, and the script is renamed into place, never seen half-written.
// The script's path, or the reason to skip.
struct NodeScript {
  std::filesystem::path script;  // where the script was copied
  std::string skip_reason;       // non-empty: node, npm or a package is missing
};

inline NodeScript prepare_node_script(const std::string& dir_name, const std::vector<std::string>& packages,
                                      const std::string& script) {
  std::string out;
  if (run_command("node --version", &out) != 0) return {{}, "node is not installed (apt-get install nodejs npm)"};
  const std::filesystem::path dir = std::filesystem::path(FATHOM_TEST_TMP) / dir_name;
  std::filesystem::create_directories(dir);
  struct Lock {
    int fd;
    ~Lock() {
      if (fd >= 0) ::close(fd);  // releases the flock
    }
  } lock{::open((dir / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};
  if (lock.fd < 0 || ::flock(lock.fd, LOCK_EX) != 0) return {{}, "cannot lock " + (dir / ".lock").string()};
  std::string names;
  bool present = true;
  for (const std::string& p : packages) {
    names += " " + p;
    present = present && std::filesystem::exists(dir / "node_modules" / p / "package.json");
  }
  if (!present) {
    out.clear();
    if (run_command("npm --version", &out) != 0) return {{}, "npm is not installed (apt-get install npm)"};
    out.clear();
    const int rc = run_command("cd '" + dir.string() + "' && timeout 180 npm install --no-audit --no-fund --loglevel=error" + names, &out);
    if (rc != 0) return {{}, "could not install the npm packages" + names + " (registry unreachable?): " + out};
  }
  const std::filesystem::path copy = dir / script;
  const std::filesystem::path partial = dir / (script + ".partial");
  std::filesystem::copy_file(std::string(FATHOM_SOURCE_DIR) + "/tests/server/" + script, partial,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(partial, copy);
  return {copy, ""};
}

}  // namespace fathom::server::test
