// Command-line options for the subcommands: declare options bound to variables, each numeric
// one with the range it accepts, parse, and get a readable --help within 100 columns. Usage
// errors (unknown option, missing value, bad number, value out of range) print one line,
// "fathom CMD: <what is wrong>", and return exit code 2.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace fathom::tools {

// The values a numeric option accepts. A value given outside it (NaN and infinities always are)
// is a usage error naming the option and the range; defaults are not checked, since 0 often
// stands for "automatic" where a user may not write 0.
// The most tokens a count, length or context may name: positions in a Batch are int32. Sizes
// below it that do not fit in memory get the memory check's explanation instead.
inline constexpr double kMaxTokens = 2147483647;

struct Range {
  double min = -std::numeric_limits<double>::max();
  double max = std::numeric_limits<double>::max();
  bool min_exclusive = false;  // (min, max] instead of [min, max]
  static Range any() { return {}; }
  static Range at_least(double min) { return {min}; }
  static Range above(double min) { return {min, std::numeric_limits<double>::max(), true}; }
  static Range between(double min, double max) { return {min, max}; }
  bool contains(double v) const;
  std::string describe() const;  // "at least 1", "above 0", "from 0 to 1"
};

// text wrapped at 100 columns (the help width), every line after the first indented by
// `indent` spaces, the first assumed to start at column `indent`; ends with a newline.
std::string wrap_help(const std::string& text, size_t indent);

class ArgParser {
 public:
  // usage: e.g. "fathom run -m FILE.gguf -p PROMPT [options]"; its leading lowercase words
  // ("fathom run") prefix every error.
  ArgParser(std::string usage, std::string summary);

  // names: comma-separated aliases, e.g. "-m,--model". metavar shown in help ("FILE").
  void add_string(const std::string& names, const std::string& metavar, const std::string& help, std::string* out);
  void add_int(const std::string& names, const std::string& metavar, const std::string& help, int64_t* out, Range range);
  void add_int(const std::string& names, const std::string& metavar, const std::string& help, int* out, Range range);
  void add_float(const std::string& names, const std::string& metavar, const std::string& help, double* out, Range range);
  // -t/--threads: from 1 to 1024; more than this machine's hardware threads warns (they would
  // share cores and run slower than fewer).
  void add_threads(const std::string& help, int* out);
  void add_flag(const std::string& names, const std::string& help, bool* out);
  // An integer option whose value is optional: `--name` alone sets bare_value, `--name=N` sets
  // N (never the next argument, so it reads like a flag). Help shows it as "--name[=N]".
  void add_optional_int(const std::string& names, const std::string& metavar, const std::string& help, int64_t* out,
                        int64_t bare_value, Range range);
  // Repeatable option: every occurrence is appended.
  void add_list(const std::string& names, const std::string& metavar, const std::string& help,
                std::vector<std::string>* out);
  // Positional arguments, in order. A required one missing is an error.
  void add_positional(const std::string& name, const std::string& help, std::string* out, bool required = true);
  // An optional positional that sets the same variable as the (string) option `option_name`,
  // e.g. the model file as `-m FILE` or as FILE; giving both is an error.
  void add_positional_alias(const std::string& name, const std::string& option_name);
  // Collects remaining positionals (after the declared ones) into out.
  void add_rest(const std::string& name, const std::string& help, std::vector<std::string>* out);

  // Returns std::nullopt to continue, or an exit code: 0 after printing --help, 2 on error.
  std::optional<int> parse(const std::vector<std::string>& args);
  std::string help() const;
  // Prints "fathom CMD: message (see fathom CMD --help)" to stderr and returns 2: for usage
  // errors the command finds after parsing (a missing prompt, options that exclude each other).
  int fail(const std::string& message) const;
  // Prints "fathom CMD: message" to stderr and returns 1: for runtime failures.
  int runtime_error(const std::string& message) const;
  const std::string& command() const { return command_; }

 private:
  enum class Kind { kString, kInt, kInt32, kFloat, kFlag, kList, kOptionalInt };
  struct Option {
    std::vector<std::string> names;
    std::string metavar;
    std::string help;
    Kind kind;
    void* out;
    Range range;
    double warn_above = std::numeric_limits<double>::infinity();  // add_threads
    int64_t bare_value = 0;  // add_optional_int: the value of the option given alone
  };
  struct Positional {
    std::string name;
    std::string help;
    std::string* out;
    bool required;
    std::string alias_of;  // option name, for add_positional_alias
  };
  const Option* find(const std::string& name) const;
  std::optional<int> set_value(const Option& o, const std::string& name, const std::string& value);
  std::string usage_;
  std::string command_;  // "fathom run"
  std::string summary_;
  std::vector<Option> options_;
  std::vector<Positional> positionals_;
  std::vector<std::string>* rest_ = nullptr;
  std::string rest_name_;
  std::string rest_help_;
};

}  // namespace fathom::tools
