#!/bin/sh
# Installs the build into a temporary prefix and builds the quickstart
# example against it three ways: CMake find_package (shared and static)
# and pkg-config. Usage: check_install.sh BUILD_DIR SOURCE_DIR [CFLAGS]
# (CFLAGS: what a sanitizer build's consumers need too).
set -eu
build=$1
src=$2
flags=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DEXAMPLE="$src/client/examples/quickstart.c" -DCMAKE_C_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
cc $flags "$src/client/examples/quickstart.c" $(pkg-config --cflags --libs cairn) -o "$tmp/pc_app"
test -x "$tmp/consumer/shared_app" && test -x "$tmp/consumer/static_app" && test -x "$tmp/pc_app"
# The generated cairn/version.h is installed beside cairn.h (its template
# is not), and the headers, the library and cairn.pc tell one version.
test -f "$tmp/prefix/include/cairn/version.h"
test ! -e "$tmp/prefix/include/cairn/version.h.in"
cat >"$tmp/version.c" <<'EOC'
#include <cairn/cairn.h>
#include <stdio.h>
int main(void) { printf("%s %s\n", CAIRN_VERSION_STRING, cairn_version()); return 0; }
EOC
# shellcheck disable=SC2046
cc $flags "$tmp/version.c" $(pkg-config --cflags --libs cairn) -o "$tmp/version_app"
pc_version=$(pkg-config --modversion cairn)
got=$(LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/version_app")
if [ "$got" != "$pc_version $pc_version" ]; then
    echo "versions disagree: cairn.pc says $pc_version, headers and library say $got" >&2
    exit 1
fi
# The shared library exports cairn_* and nothing else (no nanopb, no gRPC).
lib=$(ls "$tmp"/prefix/lib/libcairn.so.*.*.*)
if nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | grep -v '^cairn_'; then
    echo "libcairn exports symbols outside cairn_" >&2
    exit 1
fi
echo "install ok"
