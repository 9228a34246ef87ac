#!/usr/bin/env bash
# Installs the Debian packages fathom needs to build and test, only those missing.
# Uses sudo when not root. Safe to run repeatedly: a no-op when everything is present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  nlohmann-json3-dev   # JSON (GGUF-independent config, HTTP API, tokenizer.json)
  libpcre2-dev         # Unicode-aware regexes for the BPE pre-tokenizers
  libcpp-httplib-dev   # HTTP client for `fathom bench load` and test clients
  libedit-dev          # line editing and history in `fathom chat` (BSD licence)
  tmux                 # tests: `fathom chat` on a real terminal (Ctrl-C, Ctrl-D), tests/tools/chat_tty_test.cpp
  libboost-dev         # Boost.Beast/Asio: the event-driven HTTP server of `fathom serve`
  libcurl4-openssl-dev # `fathom pull`: HTTPS downloads with redirects, Range resume and proxies
  libssl-dev           # `fathom pull`: sha256 of downloads (OpenSSL's libcrypto EVP)
  libgtest-dev libgmock-dev
  python3 python3-jinja2  # reference renderer for the chat-template tests
  opencl-headers ocl-icd-opencl-dev  # OpenCL backend (FATHOM_OPENCL=auto builds it when present)
  pocl-opencl-icd clinfo  # OpenCL on the CPU, so the OpenCL tests run on any machine
  clang-14 libclang-rt-14-dev  # libFuzzer targets in tests/fuzz (clang's -fsanitize=fuzzer runtime)
  nginx-light prometheus  # tests/deploy: the shipped nginx and Prometheus configurations run for real (promtool too)
  openssl python3-yaml  # tests/deploy: a self-signed certificate for the TLS example; reading the YAML artefacts
  chromium             # headless browser for the web chat test (tests/server/webchat_browser_test, via puppeteer-core)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js and npm drive the official `openai` client in tests/server. They are checked as
# commands, not packages: a machine may have them from another source (NodeSource's nodejs
# bundles npm and conflicts with Debian's npm package).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "fathom: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "fathom: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
