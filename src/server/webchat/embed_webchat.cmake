# Writes a C++ file holding the web chat's files (src/server/webchat) as raw strings, so
# `fathom serve` serves them from the binary: no files to install, no network, no build tool.
# Run as: cmake -DOUT=file.cpp -DSOURCES=a.html|b.js -P embed_webchat.cmake
string(REPLACE "|" ";" sources "${SOURCES}")
set(entries "")
foreach(src IN LISTS sources)
  file(READ "${src}" text)
  get_filename_component(name "${src}" NAME)
  get_filename_component(ext "${src}" LAST_EXT)
  if(ext STREQUAL ".html")
    set(type "text/html; charset=utf-8")
  elseif(ext STREQUAL ".js")
    set(type "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(type "text/css; charset=utf-8")
  else()
    message(FATAL_ERROR "embed_webchat: no content type for ${name}")
  endif()
  string(FIND "${text}" ")FATHOM_WEB\"" bad)
  if(NOT bad EQUAL -1)
    message(FATAL_ERROR "${name} contains the raw-string delimiter )FATHOM_WEB\"")
  endif()
  string(APPEND entries "      {\"/webchat/${name}\", \"${type}\", R\"FATHOM_WEB(${text})FATHOM_WEB\"},\n")
endforeach()
file(WRITE "${OUT}"
  "// Generated from src/server/webchat/* by embed_webchat.cmake; do not edit.\n"
  "#include \"server/webchat_assets.h\"\n\n"
  "namespace fathom::server {\n\n"
  "const WebchatAsset* webchat_asset(std::string_view path) {\n"
  "  static const WebchatAsset kAssets[] = {\n${entries}  };\n"
  "  if (path == \"/\") path = \"/webchat/index.html\";\n"
  "  for (const WebchatAsset& a : kAssets)\n"
  "    if (path == a.path) return &a;\n"
  "  return nullptr;\n"
  "}\n\n"
  "}  // namespace fathom::server\n")
