#include "plan/svg.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "plan/loadgen_math.h"

namespace fathom::plan {
namespace {

// A tiny well-formedness check: every element opened is closed in order (self-closing tags
// and the <?xml ...?> prolog aside), and attribute quotes are balanced.
bool tags_balanced(const std::string& s, std::string* why) {
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = s.find('<', i)) != std::string::npos) {
    const size_t end = s.find('>', i);
    if (end == std::string::npos) return *why = "unterminated tag", false;
    const std::string tag = s.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) return *why = "empty tag", false;
    if (tag[0] == '?' || tag[0] == '!') continue;
    size_t quotes = 0;
    for (char c : tag) quotes += c == '"';
    if (quotes % 2) return *why = "unbalanced quotes in <" + tag + ">", false;
    if (tag.back() == '/') continue;
    const std::string name = tag.substr(tag[0] == '/' ? 1 : 0, tag.find_first_of(" \t\n") - (tag[0] == '/' ? 1 : 0));
    if (tag[0] != '/') {
      stack.push_back(name);
    } else {
      if (stack.empty() || stack.back() != name) return *why = "mismatched </" + name + ">", false;
      stack.pop_back();
    }
  }
  if (!stack.empty()) return *why = "unclosed <" + stack.back() + ">", false;
  return true;
}

TEST(Svg, NiceTicksCoverRange) {
  const std::vector<double> t = nice_ticks(0.3, 97.0);
  ASSERT_GE(t.size(), 3u);
  EXPECT_LE(t.front(), 0.3);
  EXPECT_GE(t.back(), 97.0);
  const double step = t[1] - t[0];
  EXPECT_TRUE(step == 10.0 || step == 20.0) << step;
}

TEST(Svg, WritesWellFormedChart) {
  std::vector<double> fast, slow;
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> d1(3.0, 0.4), d2(3.6, 0.5);
  for (int i = 0; i < 500; ++i) fast.push_back(d1(rng)), slow.push_back(d2(rng));
  Chart cdf;
  cdf.title = "Request latency CDF";
  cdf.x_label = "latency (ms)";
  cdf.y_label = "fraction of requests";
  cdf.series = {cdf_series("concurrency 1", fast), cdf_series("concurrency 8 <&>", slow)};
  Chart tput;
  tput.title = "Throughput over time";
  tput.x_label = "time (s)";
  tput.y_label = "tokens/s";
  Series s;
  s.label = "output tokens/s";
  for (int i = 0; i < 60; ++i) s.x.push_back(i), s.y.push_back(400 + 50 * std::sin(i / 5.0));
  tput.series = {s};
  const std::string svg = render_svg_panels({cdf, tput});
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("&lt;&amp;&gt;"), std::string::npos);  // labels are escaped
  EXPECT_NE(svg.find("Throughput over time"), std::string::npos);
  std::string why;
  EXPECT_TRUE(tags_balanced(svg, &why)) << why;

  const std::string path = std::string(FATHOM_TEST_TMP) + "/plan_latency.svg";
  ASSERT_TRUE(write_text_file(path, svg).is_ok());
  std::ifstream f(path);
  std::stringstream back;
  back << f.rdbuf();
  EXPECT_EQ(back.str(), svg);
}

TEST(Svg, EmptyChartStillRenders) {
  Chart c;
  c.title = "nothing yet";
  std::string why;
  EXPECT_TRUE(tags_balanced(render_svg(c), &why)) << why;
}

}  // namespace
}  // namespace fathom::plan
