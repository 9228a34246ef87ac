// Errors as values: Status for operations without a result, Expected<T> for those with one.
// Every boundary that touches input (files, network, user parameters) returns one of these;
// an abort is reserved for broken internal invariants (FATHOM_CHECK).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace fathom {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,   // bad user parameter or malformed request
  kInvalidFile,       // malformed, truncated or hostile file
  kNotFound,          // file, key, tensor or route does not exist
  kUnsupported,       // valid input that this build cannot handle (unknown arch, dtype, construct)
  kOutOfMemory,       // allocation or KV pool exhausted
  kOutOfRange,        // context limit, index past the end
  kIo,                // read/write/mmap failure
  kUnavailable,       // backend or device not present / not ready
  kCancelled,         // request cancelled by the client
  kInternal,          // should not happen; indicates a bug
};

const char* error_code_name(ErrorCode code);

class Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid file: tensor 'x' extends past end of file (offset 123, size 456)"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status error(ErrorCode code, std::string message) { return Status(code, std::move(message)); }

// printf-style message builder, used to make errors that name what was wrong and where.
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

template <typename T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}                 // NOLINT: implicit by design
  Expected(Status status) : v_(std::move(status)) {           // NOLINT: implicit by design
    if (std::get<Status>(v_).is_ok()) v_ = Status(ErrorCode::kInternal, "Expected built from ok Status");
  }

  bool has_value() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Status& status() const {
    static const Status kOkStatus;
    return has_value() ? kOkStatus : std::get<Status>(v_);
  }

 private:
  std::variant<T, Status> v_;
};

[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& hint);

}  // namespace fathom

// Internal invariant: aborts with file:line. Never use for user input.
#define FATHOM_CHECK(cond)                                                          \
  do {                                                                              \
    if (!(cond)) ::fathom::check_failed(__FILE__, __LINE__, #cond, std::string()); \
  } while (0)
#define FATHOM_CHECK_MSG(cond, msg)                                       \
  do {                                                                    \
    if (!(cond)) ::fathom::check_failed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)

// Propagate a non-ok Status from an expression returning Status.
#define FATHOM_RETURN_IF_ERROR(expr)        \
  do {                                      \
    ::fathom::Status _st = (expr);          \
    if (!_st.is_ok()) return _st;           \
  } while (0)

#define FATHOM_CONCAT_INNER(a, b) a##b
#define FATHOM_CONCAT(a, b) FATHOM_CONCAT_INNER(a, b)
// FATHOM_ASSIGN_OR_RETURN(auto x, expected_expr);
#define FATHOM_ASSIGN_OR_RETURN(lhs, expr) \
  FATHOM_ASSIGN_OR_RETURN_IMPL(FATHOM_CONCAT(_exp_, __LINE__), lhs, expr)
#define FATHOM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.has_value()) return tmp.status();         \
  lhs = std::move(tmp).value()
