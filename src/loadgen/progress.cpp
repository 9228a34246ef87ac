#include "loadgen/progress.h"

#include <algorithm>

#include "core/status.h"

namespace fathom::loadgen {

namespace {

constexpr int kBarWidth = 24;            // characters inside [ ]
constexpr double kPlainLineInterval = 5; // seconds between lines when not on a terminal

}  // namespace

std::string ProgressPrinter::format(const ProgressSnapshot& s, const std::string& label, bool with_bar) {
  // Fraction done: by requests when their number is known, else by time.
  double fraction = 0;
  if (s.total > 0) fraction = static_cast<double>(s.done) / static_cast<double>(s.total);
  else if (s.duration_s > 0) fraction = s.elapsed_s / s.duration_s;
  fraction = std::clamp(fraction, 0.0, 1.0);
  std::string line = label + " ";
  if (with_bar) {
    const size_t filled = static_cast<size_t>(fraction * kBarWidth + 0.5);
    line.push_back('[');
    line.append(filled, '#');
    line.append(static_cast<size_t>(kBarWidth) - filled, '.');
    line.append("] ");
  }
  line += s.total > 0 ? strprintf("%lld/%lld done", static_cast<long long>(s.done), static_cast<long long>(s.total))
                      : strprintf("%lld done", static_cast<long long>(s.done));
  line += strprintf(", %lld errors, %lld in flight", static_cast<long long>(s.errors), static_cast<long long>(s.in_flight));
  if (s.queued > 0) line += strprintf(", %lld queued", static_cast<long long>(s.queued));
  line += strprintf(", %.1f s", s.elapsed_s);
  if (s.duration_s > 0) line += strprintf(" of %.0f s", s.duration_s);
  return line;
}

void ProgressPrinter::update(const ProgressSnapshot& s) {
  if (is_terminal_) {
    const std::string line = format(s, label_, /*with_bar=*/true);
    const size_t pad = last_width_ > line.size() ? last_width_ - line.size() : 0;
    std::fprintf(out_, "\r%s%s%s", line.c_str(), std::string(pad, ' ').c_str(), s.final ? "\n" : "");
    last_width_ = line.size();
    std::fflush(out_);
    return;
  }
  if (!s.final && last_line_s_ >= 0 && s.elapsed_s - last_line_s_ < kPlainLineInterval) return;
  if (!s.final && last_line_s_ < 0 && s.elapsed_s < kPlainLineInterval) return;  // short runs: just the last line
  last_line_s_ = s.elapsed_s;
  std::fprintf(out_, "%s\n", format(s, label_, /*with_bar=*/false).c_str());
  std::fflush(out_);
}

}  // namespace fathom::loadgen
