// The built-in web chat's files (src/server/webchat), embedded at build time by
// src/server/webchat/embed_webchat.cmake and served by `fathom serve` at GET / and /webchat/*.
#pragma once

#include <string_view>

namespace fathom::server {

struct WebchatAsset {
  const char* path;          // "/webchat/app.js"
  const char* content_type;  // "text/javascript; charset=utf-8"
  const char* body;          // the file's text
};

// The file served at `path` ("/" is index.html), or nullptr.
const WebchatAsset* webchat_asset(std::string_view path);

}  // namespace fathom::server
