#!/usr/bin/env bash
# Builds the peer: llama.cpp as vendored by the PyPI sdist of llama-cpp-python.
# Downloads the sdist with pip (PyPI only), checks its sha256, builds
# vendor/llama.cpp with cmake (Release, CPU only, GGML_NATIVE=ON, no network
# fetches) into ${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}. CI never runs this.
#
#   scripts/peer/build_llamacpp.sh            # download (if needed) + build
#   JOBS=1 scripts/peer/build_llamacpp.sh     # fewer compile jobs (default 2)
set -euo pipefail

VERSION=0.3.36
SDIST=llama_cpp_python-${VERSION}.tar.gz
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# llama-cpp-python 0.3.36's CHANGELOG: "update llama.cpp to ggml-org/llama.cpp@0c1e57098";
# the sdist carries the submodule's git metadata (shallow): HEAD is this commit (2026-10-01).
LLAMACPP_COMMIT=0c1e57098
LLAMACPP_COMMIT_FULL=0c1e57098bba43ac29e6e3b677cdceebdd22334f

PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}
JOBS=${JOBS:-2}
mkdir -p "$PEER"
cd "$PEER"

if [ ! -f "$SDIST" ] || [ "$(sha256sum "$SDIST" | cut -d' ' -f1)" != "$SDIST_SHA256" ]; then
    rm -f "$SDIST"
    # --no-binary only for this package: its build dependencies (cmake, ninja)
    # come as wheels while pip prepares the sdist's metadata.
    pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==${VERSION}" -d "$PEER"
fi
got=$(sha256sum "$SDIST" | cut -d' ' -f1)
if [ "$got" != "$SDIST_SHA256" ]; then
    echo "error: $SDIST sha256 $got, expected $SDIST_SHA256" >&2
    exit 1
fi

SRC=$PEER/llama_cpp_python-${VERSION}
if [ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]; then
    tar xzf "$SDIST"
fi
grep -q "llama.cpp@${LLAMACPP_COMMIT}" "$SRC/CHANGELOG.md" || {
    echo "error: $SRC/CHANGELOG.md does not name llama.cpp@${LLAMACPP_COMMIT}" >&2; exit 1; }
if command -v git >/dev/null; then
    head=$(git -C "$SRC/vendor/llama.cpp" rev-parse HEAD 2>/dev/null || echo unknown)
    if [ "$head" != "$LLAMACPP_COMMIT_FULL" ]; then
        echo "error: vendor/llama.cpp is at $head, expected $LLAMACPP_COMMIT_FULL" >&2; exit 1
    fi
fi

BUILD=$PEER/build
cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DBUILD_SHARED_LIBS=OFF

# Only the targets that exist in this llama.cpp.
# llama-cli is the interactive chat tool in this version (no -no-cnv); llama-completion is the
# one-shot generator (-p ... -n N --temp 0 -no-cnv).
wanted="llama-bench llama-perplexity llama-quantize llama-imatrix llama-completion llama-server llama-lookup llama-cli llama-tokenize"
have=$(cmake --build "$BUILD" --target help | sed -n 's/^\.\.\. \([^ ]*\).*/\1/p')
targets=()
for t in $wanted; do
    if grep -qx "$t" <<<"$have"; then targets+=("$t"); else echo "note: no target $t" >&2; fi
done
nice -n 10 cmake --build "$BUILD" --config Release -j "$JOBS" --target "${targets[@]}"

echo "llama.cpp ${LLAMACPP_COMMIT} (llama-cpp-python ${VERSION}) built in $BUILD/bin:"
ls "$BUILD/bin"
