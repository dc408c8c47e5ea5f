#!/usr/bin/env bash
# The test suite under AddressSanitizer and the C kernels under UndefinedBehaviorSanitizer
# (issue 25). Usage:
#
#   scripts/sanitize.sh [asan|ubsan|both|combined] [FILTER|all]
#
# asan:  swift build --sanitize=address (every Swift and C target), then `swift test` with
#        FILTER (default: the readers, writer, fuzz and kernel tests, the tokenizers, the
#        serving engine, the model references; `all`: the whole suite, ~1 h on 2 cores).
# ubsan: the C targets with -fsanitize=undefined (swiftc refuses --sanitize=undefined on
#        Linux; clang's runtime is linked through -Xclang-linker), then the kernel and reader
#        tests. Every "runtime error:" line is a report.
# combined: one build with both (ASan on every target, UBSan on the C targets) and one run of
#        FILTER (default: asan's list), for a host that has time for one sanitized build only.
# The sanitized build is -c release by default ($QUANTLM_SANITIZE_CONFIG=debug for debug):
# ASan and UBSan instrument the optimized code the same way (every load/store and every UB
# check stays; only what the optimizer removed is not checked), and the whole suite runs in a
# fraction of the debug build's time. Every Swift target gets -DQUANTLM_SANITIZED, which widens
# the few bounds a sanitizer moves (TestSupport/Sanitizers.swift). Build folders live outside
# the repo ($QUANTLM_SANITIZE_CACHE, default ~/.cache/quantlm/sanitize), one per mode and config.
# Tests that run the built executables use .build/release (build it first). Pin it yourself on
# a shared host: `taskset -c 1 scripts/sanitize.sh combined all` (the script nices itself).
# Exit 0 only when every test passed and there were 0 sanitizer reports.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${QUANTLM_SANITIZE_CACHE:-$HOME/.cache/quantlm/sanitize}
MODE=${1:-both}
FILTER=${2:-}
CONFIG=${QUANTLM_SANITIZE_CONFIG:-release}
DEFAULT_ASAN='QuantTests|KernelTests|Llama2cTokenizerTests|GPT2TokenizerTests|SentencePieceTokenizerTests|GGUFTokenizerTests|ServingEngineTests|ModelReferenceTests|AttentionTests|RunReliabilityTests/testLlama2c|MemoryBudgetTests|SpeculativeTests|PublicAPITests'
DEFAULT_UBSAN='KernelTests|QuantTests|LogitsFixtureTests|ModelReferenceTests|AttentionTests'
mkdir -p "$CACHE"
status=0

run() { # name, build flags..., -- test flags...
  local name=$1-$CONFIG; shift
  local bflags=(-c "$CONFIG") tflags=()
  while [ "$1" != -- ]; do bflags+=("$1"); shift; done; shift
  bflags+=(-Xswiftc -DQUANTLM_SANITIZED)
  tflags=("$@")
  local log=$CACHE/$name.log
  echo "== $name: building ($CACHE/$name)"
  if ! nice -n 19 swift build --package-path "$ROOT" --build-path "$CACHE/$name" --build-tests "${bflags[@]}" > "$CACHE/$name-build.log" 2>&1; then
    tail -20 "$CACHE/$name-build.log"; echo "== $name: build failed"; status=1; return
  fi
  echo "== $name: testing ${tflags[*]}"
  local t0=$SECONDS
  nice -n 19 swift test --package-path "$ROOT" --build-path "$CACHE/$name" --skip-build "${bflags[@]}" "${tflags[@]}" > "$log" 2>&1
  local rc=$?
  local reports
  reports=$(grep -cE "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer" "$log")
  grep -E "runtime error:|ERROR: AddressSanitizer|SUMMARY: " "$log" | sort | uniq -c | head -20
  echo "== $name: $(grep -E '^\s*Executed [0-9]+ tests' "$log" | tail -1 | sed 's/^ *//'); exit $rc; $reports sanitizer reports; $((SECONDS - t0)) s"
  [ $rc -eq 0 ] && [ "$reports" -eq 0 ] || status=1
}

filter() { [ "$FILTER" = all ] && return; echo --filter; echo "${FILTER:-$1}"; }

if [ "$MODE" = asan ] || [ "$MODE" = both ]; then
  # Leak checks are off: the test process keeps caches (converted models, thread pools) alive on purpose.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} run asan --sanitize=address -- $(filter "$DEFAULT_ASAN")
fi
if [ "$MODE" = combined ]; then
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} run combined --sanitize=address \
    -Xcc -fsanitize=undefined -Xswiftc -Xclang-linker -Xswiftc -fsanitize=undefined -- $(filter "$DEFAULT_ASAN")
fi
if [ "$MODE" = ubsan ] || [ "$MODE" = both ]; then
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} run ubsan -Xcc -fsanitize=undefined -Xswiftc -Xclang-linker -Xswiftc -fsanitize=undefined \
    -- $(filter "$DEFAULT_UBSAN")
fi
exit $status
