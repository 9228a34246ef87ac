#include "tools/args.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

namespace fathom::tools {

namespace {

constexpr size_t kHelpWidth = 100;  // columns; a test holds every command's --help to it
constexpr size_t kLeftWidth = 26;   // option names column

std::vector<std::string> split_names(const std::string& names) {
  std::vector<std::string> out;
  std::stringstream ss(names);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

std::string format_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// "  LEFT                       text wrapped at kHelpWidth, continued under the text\n"
std::string help_entry(const std::string& left, const std::string& text) {
  const size_t indent = 2 + kLeftWidth + 1;
  std::string out = "  " + left;
  if (left.size() > kLeftWidth) {
    out += "\n" + std::string(indent, ' ');
  } else {
    out += std::string(kLeftWidth + 1 - left.size(), ' ');
  }
  return out + wrap_help(text, indent);
}

// The leading words of a usage line that name the command: "fathom bench load".
std::string command_of(const std::string& usage) {
  std::istringstream words(usage);
  std::string word, command;
  while (words >> word) {
    bool lower = true;
    for (char c : word) lower = lower && (std::islower(static_cast<unsigned char>(c)) || c == '-');
    if (!lower || word[0] == '-') break;
    command += (command.empty() ? "" : " ") + word;
  }
  return command;
}

}  // namespace

std::string wrap_help(const std::string& text, size_t indent) {
  std::string out;
  size_t column = indent;
  bool line_start = true;
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    if (!line_start && column + 1 + word.size() > kHelpWidth) {
      out += "\n" + std::string(indent, ' ');
      column = indent;
      line_start = true;
    }
    if (!line_start) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    line_start = false;
  }
  return out + "\n";
}

bool Range::contains(double v) const {
  if (!std::isfinite(v)) return false;
  return (min_exclusive ? v > min : v >= min) && v <= max;
}

std::string Range::describe() const {
  const double top = std::numeric_limits<double>::max();
  if (max == top) return (min_exclusive ? "above " : "at least ") + format_number(min);
  if (min == -top) return "at most " + format_number(max);
  return (min_exclusive ? "above " + format_number(min) + " and at most " : "from " + format_number(min) + " to ") +
         format_number(max);
}

ArgParser::ArgParser(std::string usage, std::string summary)
    : usage_(std::move(usage)), command_(command_of(usage_)), summary_(std::move(summary)) {}

void ArgParser::add_string(const std::string& names, const std::string& metavar, const std::string& help, std::string* out) {
  options_.push_back({split_names(names), metavar, help, Kind::kString, out, Range::any()});
}
void ArgParser::add_int(const std::string& names, const std::string& metavar, const std::string& help, int64_t* out,
                        Range range) {
  options_.push_back({split_names(names), metavar, help, Kind::kInt, out, range});
}
void ArgParser::add_int(const std::string& names, const std::string& metavar, const std::string& help, int* out,
                        Range range) {
  range.min = std::max<double>(range.min, INT32_MIN);
  range.max = std::min<double>(range.max, INT32_MAX);
  options_.push_back({split_names(names), metavar, help, Kind::kInt32, out, range});
}
void ArgParser::add_float(const std::string& names, const std::string& metavar, const std::string& help, double* out,
                          Range range) {
  options_.push_back({split_names(names), metavar, help, Kind::kFloat, out, range});
}
void ArgParser::add_threads(const std::string& help, int* out) {
  add_int("-t,--threads", "N", help, out, Range::between(1, 1024));
  const unsigned hardware_threads = std::thread::hardware_concurrency();
  if (hardware_threads > 0) options_.back().warn_above = hardware_threads;
}
void ArgParser::add_flag(const std::string& names, const std::string& help, bool* out) {
  options_.push_back({split_names(names), "", help, Kind::kFlag, out, Range::any()});
}
void ArgParser::add_optional_int(const std::string& names, const std::string& metavar, const std::string& help,
                                 int64_t* out, int64_t bare_value, Range range) {
  options_.push_back({split_names(names), metavar, help, Kind::kOptionalInt, out, range});
  options_.back().bare_value = bare_value;
}
void ArgParser::add_list(const std::string& names, const std::string& metavar, const std::string& help,
                         std::vector<std::string>* out) {
  options_.push_back({split_names(names), metavar, help, Kind::kList, out, Range::any()});
}
void ArgParser::add_positional(const std::string& name, const std::string& help, std::string* out, bool required) {
  positionals_.push_back({name, help, out, required, ""});
}
void ArgParser::add_positional_alias(const std::string& name, const std::string& option_name) {
  const Option* o = find(option_name);
  if (!o || o->kind != Kind::kString) std::abort();  // a broken declaration, not user input
  positionals_.push_back({name, "same as " + option_name, static_cast<std::string*>(o->out), false, option_name});
}
void ArgParser::add_rest(const std::string& name, const std::string& help, std::vector<std::string>* out) {
  rest_ = out;
  rest_name_ = name;
  rest_help_ = help;
}

const ArgParser::Option* ArgParser::find(const std::string& name) const {
  for (const Option& o : options_)
    for (const std::string& n : o.names)
      if (n == name) return &o;
  return nullptr;
}

std::string ArgParser::help() const {
  std::string s = "usage: " + usage_ + "\n\n" + summary_ + "\n";
  if (!positionals_.empty() || rest_) {
    s += "\narguments:\n";
    for (const Positional& p : positionals_) s += help_entry(p.name, p.help);
    if (rest_) s += help_entry(rest_name_, rest_help_);
  }
  s += "\noptions:\n";
  for (const Option& o : options_) {
    std::string left;
    for (size_t i = 0; i < o.names.size(); ++i) left += (i ? ", " : "") + o.names[i];
    if (o.kind == Kind::kOptionalInt) left += "[=" + o.metavar + "]";
    else if (!o.metavar.empty()) left += " " + o.metavar;
    s += help_entry(left, o.help);
  }
  s += help_entry("-h, --help", "show this help");
  return s;
}

int ArgParser::fail(const std::string& message) const {
  std::fprintf(stderr, "%s: %s (see %s --help)\n", command_.c_str(), message.c_str(), command_.c_str());
  return 2;
}

int ArgParser::runtime_error(const std::string& message) const {
  std::fprintf(stderr, "%s: %s\n", command_.c_str(), message.c_str());
  return 1;
}

std::optional<int> ArgParser::set_value(const Option& o, const std::string& name, const std::string& value) {
  switch (o.kind) {
    case Kind::kString: *static_cast<std::string*>(o.out) = value; return std::nullopt;
    case Kind::kList: static_cast<std::vector<std::string>*>(o.out)->push_back(value); return std::nullopt;
    case Kind::kFlag: return std::nullopt;
    case Kind::kInt:
    case Kind::kOptionalInt:
    case Kind::kInt32:
    case Kind::kFloat: break;
  }
  const bool integer = o.kind != Kind::kFloat;
  char* end = nullptr;
  errno = 0;
  const long long as_int = integer ? std::strtoll(value.c_str(), &end, 10) : 0;
  const double v = integer ? static_cast<double>(as_int) : std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    return fail(name + " expects " + (integer ? "an integer" : "a number") + ", got '" + value + "'");
  if (!o.range.contains(v)) return fail(name + " must be " + o.range.describe() + ", got " + value);
  if (v > o.warn_above)
    std::fprintf(stderr, "%s: warning: %s %s is more than the %s hardware threads here; they will share cores\n",
                 command_.c_str(), name.c_str(), value.c_str(), format_number(o.warn_above).c_str());
  if (o.kind == Kind::kInt || o.kind == Kind::kOptionalInt) *static_cast<int64_t*>(o.out) = as_int;
  if (o.kind == Kind::kInt32) *static_cast<int*>(o.out) = static_cast<int>(as_int);
  if (o.kind == Kind::kFloat) *static_cast<double*>(o.out) = v;
  return std::nullopt;
}

std::optional<int> ArgParser::parse(const std::vector<std::string>& args) {
  size_t next_positional = 0;
  bool only_positionals = false;
  std::vector<const Option*> given;  // for add_positional_alias
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!only_positionals && (a == "-h" || a == "--help")) {
      std::fputs(help().c_str(), stdout);
      return 0;
    }
    if (!only_positionals && a == "--") {
      only_positionals = true;
      continue;
    }
    if (!only_positionals && a.size() > 1 && a[0] == '-' && !std::isdigit(static_cast<unsigned char>(a[1])) && a[1] != '.') {
      std::string name = a;
      std::optional<std::string> inline_value;
      const size_t eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        name = a.substr(0, eq);
        inline_value = a.substr(eq + 1);
      }
      const Option* o = find(name);
      if (!o) return fail("unknown option '" + name + "'");
      given.push_back(o);
      if (o->kind == Kind::kFlag) {
        if (inline_value) return fail("option '" + name + "' takes no value");
        *static_cast<bool*>(o->out) = true;
        continue;
      }
      if (o->kind == Kind::kOptionalInt && !inline_value) {
        *static_cast<int64_t*>(o->out) = o->bare_value;
        continue;
      }
      std::string value;
      if (inline_value) {
        value = *inline_value;
      } else {
        if (i + 1 >= args.size()) return fail("option '" + name + "' needs a value (" + o->metavar + ")");
        value = args[++i];
      }
      if (auto rc = set_value(*o, name, value)) return rc;
      continue;
    }
    if (next_positional < positionals_.size()) {
      *positionals_[next_positional++].out = a;
    } else if (rest_) {
      rest_->push_back(a);
    } else {
      return fail("unexpected argument '" + a + "'");
    }
  }
  for (size_t i = 0; i < next_positional; ++i) {
    const Positional& p = positionals_[i];
    if (!p.alias_of.empty() && std::count(given.begin(), given.end(), find(p.alias_of)) > 0)
      return fail(p.name + " given both as " + p.alias_of + " and as an argument; pass it once");
  }
  for (size_t i = next_positional; i < positionals_.size(); ++i)
    if (positionals_[i].required) return fail("missing argument " + positionals_[i].name);
  return std::nullopt;
}

}  // namespace fathom::tools
