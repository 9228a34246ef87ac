#include "tools/args.h"

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace fathom::tools {

namespace {

std::vector<std::string> split_names(const std::string& names) {
  std::vector<std::string> out;
  std::stringstream ss(names);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

}  // namespace

ArgParser::ArgParser(std::string usage, std::string summary) : usage_(std::move(usage)), summary_(std::move(summary)) {}

void ArgParser::add_string(const std::string& names, const std::string& metavar, const std::string& help, std::string* out) {
  options_.push_back({split_names(names), metavar, help, Kind::kString, out});
}
void ArgParser::add_int(const std::string& names, const std::string& metavar, const std::string& help, int64_t* out) {
  options_.push_back({split_names(names), metavar, help, Kind::kInt, out});
}
void ArgParser::add_int(const std::string& names, const std::string& metavar, const std::string& help, int* out) {
  options_.push_back({split_names(names), metavar, help, Kind::kInt32, out});
}
void ArgParser::add_float(const std::string& names, const std::string& metavar, const std::string& help, double* out) {
  options_.push_back({split_names(names), metavar, help, Kind::kFloat, out});
}
void ArgParser::add_flag(const std::string& names, const std::string& help, bool* out) {
  options_.push_back({split_names(names), "", help, Kind::kFlag, out});
}
void ArgParser::add_list(const std::string& names, const std::string& metavar, const std::string& help,
                         std::vector<std::string>* out) {
  options_.push_back({split_names(names), metavar, help, Kind::kList, out});
}
void ArgParser::add_positional(const std::string& name, const std::string& help, std::string* out, bool required) {
  positionals_.push_back({name, help, out, required});
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
    for (const Positional& p : positionals_) {
      char line[512];
      std::snprintf(line, sizeof line, "  %-26s %s\n", p.name.c_str(), p.help.c_str());
      s += line;
    }
    if (rest_) {
      char line[512];
      std::snprintf(line, sizeof line, "  %-26s %s\n", rest_name_.c_str(), rest_help_.c_str());
      s += line;
    }
  }
  s += "\noptions:\n";
  for (const Option& o : options_) {
    std::string left;
    for (size_t i = 0; i < o.names.size(); ++i) left += (i ? ", " : "") + o.names[i];
    if (!o.metavar.empty()) left += " " + o.metavar;
    char line[1024];
    if (left.size() > 26) {
      std::snprintf(line, sizeof line, "  %s\n  %-26s %s\n", left.c_str(), "", o.help.c_str());
    } else {
      std::snprintf(line, sizeof line, "  %-26s %s\n", left.c_str(), o.help.c_str());
    }
    s += line;
  }
  s += "  -h, --help                 show this help\n";
  return s;
}

std::optional<int> ArgParser::parse(const std::vector<std::string>& args) {
  auto fail = [&](const std::string& msg) -> std::optional<int> {
    std::fprintf(stderr, "error: %s\nusage: %s\n(run with --help for all options)\n", msg.c_str(), usage_.c_str());
    return 2;
  };
  size_t next_positional = 0;
  bool only_positionals = false;
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
    if (!only_positionals && a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.'))) {
      std::string name = a;
      std::optional<std::string> inline_value;
      const size_t eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        name = a.substr(0, eq);
        inline_value = a.substr(eq + 1);
      }
      const Option* o = find(name);
      if (!o) return fail("unknown option '" + name + "'");
      if (o->kind == Kind::kFlag) {
        if (inline_value) return fail("option '" + name + "' takes no value");
        *static_cast<bool*>(o->out) = true;
        continue;
      }
      std::string value;
      if (inline_value) {
        value = *inline_value;
      } else {
        if (i + 1 >= args.size()) return fail("option '" + name + "' needs a value (" + o->metavar + ")");
        value = args[++i];
      }
      switch (o->kind) {
        case Kind::kString: *static_cast<std::string*>(o->out) = value; break;
        case Kind::kList: static_cast<std::vector<std::string>*>(o->out)->push_back(value); break;
        case Kind::kInt:
        case Kind::kInt32: {
          char* end = nullptr;
          errno = 0;
          const long long v = std::strtoll(value.c_str(), &end, 10);
          if (value.empty() || *end != '\0' || errno == ERANGE) return fail("option '" + name + "' expects an integer, got '" + value + "'");
          if (o->kind == Kind::kInt) {
            *static_cast<int64_t*>(o->out) = v;
          } else {
            if (v < INT32_MIN || v > INT32_MAX) return fail("option '" + name + "' is out of range: " + value);
            *static_cast<int*>(o->out) = static_cast<int>(v);
          }
          break;
        }
        case Kind::kFloat: {
          char* end = nullptr;
          const double v = std::strtod(value.c_str(), &end);
          if (value.empty() || *end != '\0') return fail("option '" + name + "' expects a number, got '" + value + "'");
          *static_cast<double*>(o->out) = v;
          break;
        }
        case Kind::kFlag: break;
      }
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
  for (size_t i = next_positional; i < positionals_.size(); ++i)
    if (positionals_[i].required) return fail("missing argument " + positionals_[i].name);
  return std::nullopt;
}

}  // namespace fathom::tools
