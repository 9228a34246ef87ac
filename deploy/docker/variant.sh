#!/bin/sh
# The parts of deploy/docker/Dockerfile that differ between the cpu, cuda and opencl images.
#   variant.sh build-deps VARIANT                     extra build packages (the CUDA toolkit)
#   variant.sh cmake-flags VARIANT                    the backends to build, for `make build`
#   variant.sh runtime-packages VARIANT BINARY        the Debian packages holding BINARY's libraries
#   variant.sh runtime-deps VARIANT PACKAGE_LIST      installs them (and the GPU runtime) in the image
set -eu
action=$1 variant=$2
CUDA_VERSION=12-8

nvidia_repo() {  # NVIDIA's CUDA repository for Debian 12 (the toolkit is not in Debian's)
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends ca-certificates curl
  curl -fsSLo /tmp/cuda-keyring.deb \
    https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb
  dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb
  apt-get update -qq
}

case "$variant" in cpu|cuda|opencl) ;; *) echo "variant.sh: VARIANT must be cpu, cuda or opencl, not '$variant'" >&2; exit 2 ;; esac
case "$action" in
  build-deps)
    if [ "$variant" = cuda ]; then
      nvidia_repo
      apt-get install -y -qq --no-install-recommends "cuda-nvcc-$CUDA_VERSION" "cuda-cudart-dev-$CUDA_VERSION" \
        "libcublas-dev-$CUDA_VERSION"
    fi ;;
  cmake-flags)
    case "$variant" in
      cpu) echo "-DFATHOM_CUDA=off -DFATHOM_OPENCL=off" ;;
      cuda) echo "-DFATHOM_CUDA=on -DFATHOM_OPENCL=off -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc" ;;
      opencl) echo "-DFATHOM_CUDA=off -DFATHOM_OPENCL=on" ;;
    esac ;;
  runtime-packages)
    # Each shared library the binary loads, by the package that installed it; the C and C++
    # runtimes are in the base image already.
    packages=""
    for lib in $(ldd "$3" | awk '/=> \// { print $3 }'); do
      name=$(basename "$lib")
      pkg=$( (dpkg -S "*/$(uname -m)-linux-gnu/$name" || dpkg -S "*/$name") 2>/dev/null | head -1 | cut -d: -f1)
      [ -n "$pkg" ] || { echo "variant.sh: no Debian package holds $lib" >&2; exit 1; }
      packages="$packages $pkg"
    done
    printf '%s\n' $packages | sort -u | grep -vx -e libc6 -e libstdc++6 -e libgcc-s1
    echo curl  # the HEALTHCHECK's client
    ;;
  runtime-deps)
    [ "$variant" = cuda ] && nvidia_repo
    apt-get update -qq
    extra=""
    # Intel's OpenCL driver (the ICD the loader finds); NVIDIA's driver comes from the host
    # through the NVIDIA container toolkit.
    [ "$variant" = opencl ] && extra="intel-opencl-icd"
    # shellcheck disable=SC2046
    apt-get install -y -qq --no-install-recommends $(cat "$3") $extra
    rm -rf /var/lib/apt/lists/* "$3" ;;
  *) echo "variant.sh: unknown action '$action'" >&2; exit 2 ;;
esac
