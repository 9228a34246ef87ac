# The built-in web chat: src/server/webchat/*.{html,js,css} embedded into fathom_server.
set(fathom_web_dir ${CMAKE_SOURCE_DIR}/src/server/webchat)
set(fathom_web_sources ${fathom_web_dir}/index.html ${fathom_web_dir}/app.js ${fathom_web_dir}/style.css)
set(fathom_web_generated ${CMAKE_BINARY_DIR}/generated/webchat_assets.cpp)
string(REPLACE ";" "|" fathom_web_joined "${fathom_web_sources}")
add_custom_command(
  OUTPUT ${fathom_web_generated}
  COMMAND ${CMAKE_COMMAND} -DOUT=${fathom_web_generated} -DSOURCES=${fathom_web_joined} -P ${fathom_web_dir}/embed_webchat.cmake
  DEPENDS ${fathom_web_sources} ${fathom_web_dir}/embed_webchat.cmake
  COMMENT "Embedding the web chat"
  VERBATIM)
target_sources(fathom_server PRIVATE ${fathom_web_generated})
target_compile_definitions(fathom_server PRIVATE FATHOM_VERSION="${PROJECT_VERSION}")
