// Command-line options for the subcommands: declare options bound to variables, parse, and get
// a readable --help. Errors (unknown option, missing value, bad number) print the problem and
// the usage line and return exit code 2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fathom::tools {

class ArgParser {
 public:
  // usage: e.g. "fathom run -m FILE.gguf -p PROMPT [options]"
  ArgParser(std::string usage, std::string summary);

  // names: comma-separated aliases, e.g. "-m,--model". metavar shown in help ("FILE").
  void add_string(const std::string& names, const std::string& metavar, const std::string& help, std::string* out);
  void add_int(const std::string& names, const std::string& metavar, const std::string& help, int64_t* out);
  void add_int(const std::string& names, const std::string& metavar, const std::string& help, int* out);
  void add_float(const std::string& names, const std::string& metavar, const std::string& help, double* out);
  void add_flag(const std::string& names, const std::string& help, bool* out);
  // Repeatable option: every occurrence is appended.
  void add_list(const std::string& names, const std::string& metavar, const std::string& help,
                std::vector<std::string>* out);
  // Positional arguments, in order. A required one missing is an error.
  void add_positional(const std::string& name, const std::string& help, std::string* out, bool required = true);
  // Collects remaining positionals (after the declared ones) into out.
  void add_rest(const std::string& name, const std::string& help, std::vector<std::string>* out);

  // Returns std::nullopt to continue, or an exit code: 0 after printing --help, 2 on error.
  std::optional<int> parse(const std::vector<std::string>& args);
  std::string help() const;

 private:
  enum class Kind { kString, kInt, kInt32, kFloat, kFlag, kList };
  struct Option {
    std::vector<std::string> names;
    std::string metavar;
    std::string help;
    Kind kind;
    void* out;
  };
  struct Positional {
    std::string name;
    std::string help;
    std::string* out;
    bool required;
  };
  const Option* find(const std::string& name) const;
  std::string usage_;
  std::string summary_;
  std::vector<Option> options_;
  std::vector<Positional> positionals_;
  std::vector<std::string>* rest_ = nullptr;
  std::string rest_name_;
  std::string rest_help_;
};

}  // namespace fathom::tools
