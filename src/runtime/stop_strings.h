// Stop strings over streamed text: text is released as soon as it cannot be the start of a
// stop string; on a match, the text before it is released and the match reported.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fathom {

class StopStringMatcher {
 public:
  StopStringMatcher() = default;
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // text safe to release now
    bool matched = false;  // a stop string was found (text ends right before it)
  };
  Result push(std::string_view text);
  std::string flush(std::string_view tail = {});  // the withheld text, when generation ends otherwise

 private:
  std::vector<std::string> stops_;  // non-empty stop strings
  std::string held_;                // text that may be the beginning of a stop string
};

}  // namespace fathom
