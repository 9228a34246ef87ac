#include "plan/svg.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace fathom::plan {

namespace {

// Colour-blind-safe palette (Okabe-Ito), cycled per series.
constexpr const char* kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"};

// Plot-area margins in pixels: room for tick labels, axis titles and the chart title.
constexpr int kLeft = 70, kRight = 20, kTop = 36, kBottom = 52;

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string fmt_tick(double v, double step) {
  // Enough decimals to tell neighbouring ticks apart, no more.
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step)));
  return strprintf("%.*f", std::min(decimals, 6), v);
}

struct Range {
  double lo = 0;  // data/axis minimum
  double hi = 1;  // data/axis maximum
};

// Draws one chart into `out`, its top-left corner at (ox, oy).
void draw_chart(std::ostringstream& out, const Chart& c, int ox, int oy, int width, int height) {
  Range xr{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
  Range yr = xr;
  for (const Series& s : c.series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xr.lo = std::min(xr.lo, s.x[i]), xr.hi = std::max(xr.hi, s.x[i]);
      yr.lo = std::min(yr.lo, s.y[i]), yr.hi = std::max(yr.hi, s.y[i]);
    }
  if (!std::isfinite(xr.lo)) xr = {0, 1}, yr = {0, 1};
  if (c.y_from_zero) yr.lo = std::min(0.0, yr.lo);
  if (xr.hi <= xr.lo) xr.hi = xr.lo + 1;
  if (yr.hi <= yr.lo) yr.hi = yr.lo + 1;
  yr.hi += (yr.hi - yr.lo) * c.y_headroom;
  const std::vector<double> xt = nice_ticks(xr.lo, xr.hi);
  const std::vector<double> yt = nice_ticks(yr.lo, yr.hi);
  // Axes span the outer ticks so every sample lies inside.
  xr = {std::min(xr.lo, xt.front()), std::max(xr.hi, xt.back())};
  yr = {std::min(yr.lo, yt.front()), std::max(yr.hi, yt.back())};
  const double pw = width - kLeft - kRight, ph = height - kTop - kBottom;
  auto px = [&](double x) { return ox + kLeft + (x - xr.lo) / (xr.hi - xr.lo) * pw; };
  auto py = [&](double y) { return oy + kTop + ph - (y - yr.lo) / (yr.hi - yr.lo) * ph; };

  out << "<g>\n";
  out << strprintf("<text x=\"%d\" y=\"%d\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">%s</text>\n",
                   ox + width / 2, oy + 22, escape(c.title).c_str());
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double v : xt) {
    out << strprintf("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", px(v), oy + kTop, px(v),
                     oy + kTop + ph);
    out << strprintf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n", px(v),
                     oy + kTop + ph + 16, fmt_tick(v, xstep).c_str());
  }
  for (double v : yt) {
    out << strprintf("<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", ox + kLeft, py(v),
                     ox + kLeft + pw, py(v));
    out << strprintf("<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n", ox + kLeft - 6,
                     py(v) + 4, fmt_tick(v, ystep).c_str());
  }
  out << strprintf("<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#333\"/>\n", ox + kLeft,
                   oy + kTop, pw, ph);
  out << strprintf("<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n", ox + kLeft + pw / 2,
                   oy + height - 12, escape(c.x_label).c_str());
  const double ymid = oy + kTop + ph / 2;
  out << strprintf("<text x=\"%d\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 %d %.1f)\">%s</text>\n",
                   ox + 16, ymid, ox + 16, ymid, escape(c.y_label).c_str());

  for (size_t si = 0; si < c.series.size(); ++si) {
    const Series& s = c.series[si];
    out << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << kPalette[si % std::size(kPalette)] << "\" points=\"";
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) out << strprintf("%.1f,%.1f ", px(s.x[i]), py(s.y[i]));
    out << "\"/>\n";
    if (!s.markers) continue;
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
        out << strprintf("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", px(s.x[i]), py(s.y[i]),
                         kPalette[si % std::size(kPalette)]);
  }
  // Legend after the lines, on a translucent box so it stays readable where lines pass under it.
  if (!c.series.empty()) {
    size_t longest = 0;
    for (const Series& s : c.series) longest = std::max(longest, s.label.size());
    out << strprintf("<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"white\" fill-opacity=\"0.85\" "
                     "stroke=\"#ccc\"/>\n",
                     ox + kLeft + 4, oy + kTop + 4, 46 + 7.0 * static_cast<double>(longest),
                     8 + 18.0 * static_cast<double>(c.series.size()));
  }
  for (size_t si = 0; si < c.series.size(); ++si) {
    const double ly = oy + kTop + 16 + 18.0 * static_cast<double>(si);
    out << strprintf("<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>\n",
                     ox + kLeft + 10, ly, ox + kLeft + 34, ly, kPalette[si % std::size(kPalette)]);
    out << strprintf("<text x=\"%d\" y=\"%.1f\" font-size=\"12\">%s</text>\n", ox + kLeft + 40, ly + 4,
                     escape(c.series[si].label).c_str());
  }
  out << "</g>\n";
}

}  // namespace

Series cdf_series(const std::string& label, std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  Series s;
  s.label = label;
  const double n = static_cast<double>(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    s.x.push_back(samples[i]);
    s.y.push_back(static_cast<double>(i + 1) / n);
  }
  return s;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  const double first = std::floor(lo / step) * step;
  for (double v = first; v <= hi + step * 0.999; v += step) ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return ticks;
}

std::string render_svg_panels(const std::vector<Chart>& charts, int width, int panel_height) {
  std::ostringstream out;
  const int height = panel_height * static_cast<int>(std::max<size_t>(charts.size(), 1));
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out << strprintf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                   "font-family=\"sans-serif\">\n",
                   width, height, width, height);
  out << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t i = 0; i < charts.size(); ++i) draw_chart(out, charts[i], 0, static_cast<int>(i) * panel_height, width, panel_height);
  out << "</svg>\n";
  return out.str();
}

std::string render_svg(const Chart& chart, int width, int height) { return render_svg_panels({chart}, width, height); }

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return error(ErrorCode::kIo, "cannot open '" + path + "' for writing");
  f << text;
  f.close();
  if (!f) return error(ErrorCode::kIo, "error writing '" + path + "'");
  return Status::ok();
}

}  // namespace fathom::plan
