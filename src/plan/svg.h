// Plain-SVG line charts for benchmark reports (latency CDFs, throughput over time): axes with
// "nice" ticks, labels, a legend. Text output only, no dependencies, viewable in any browser.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace fathom::plan {

struct Series {
  std::string label;       // legend text
  std::vector<double> x;   // [n] x values
  std::vector<double> y;   // [n] y values, same length as x
  bool markers = false;    // a dot at every point (measured points, as opposed to a curve)
};

struct Chart {
  std::string title;       // above the plot
  std::string x_label;     // below the x axis, e.g. "latency (ms)"
  std::string y_label;     // left of the y axis, rotated
  std::vector<Series> series;
  bool y_from_zero = true; // start the y axis at 0 rather than at the data minimum
  double y_headroom = 0;   // room above the data maximum, as a fraction of the data's y span
};

// Empirical CDF of samples: x = sorted values, y = fraction of samples <= x (0..1].
Series cdf_series(const std::string& label, std::vector<double> samples);

// Tick positions 1/2/5 x 10^k covering [lo, hi] with about `target` ticks.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

// One chart as a complete <svg> document.
std::string render_svg(const Chart& chart, int width = 720, int height = 420);
// Several charts stacked vertically in one document (e.g. CDF above throughput).
std::string render_svg_panels(const std::vector<Chart>& charts, int width = 720, int panel_height = 420);

Status write_text_file(const std::string& path, const std::string& text);

}  // namespace fathom::plan
