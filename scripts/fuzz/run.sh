#!/usr/bin/env bash
# libFuzzer harnesses for QuantLM's readers (issue 25). Usage:
#
#   scripts/fuzz/run.sh [HARNESS|all] [SECONDS] [RUNS]   (default: all, 60 s each)
#
# RUNS: stop a harness after that many executions (e.g. 1000000) or at SECONDS, whichever
# comes first (default: SECONDS only).
# HARNESS: qlm gguf safetensors llama2c tokenizers http hf.
# Builds the package's libraries once with SwiftPM under -sanitize=fuzzer,address (outside the
# repo: $QUANTLM_FUZZ_CACHE, default ~/.cache/quantlm/fuzz), links each harness
# (scripts/fuzz/NAME.swift + common.swift) with swiftc -sanitize=fuzzer,address, makes a small
# seed corpus, and runs the harnesses one at a time under nice -n 19. Corpora and crash
# reproducers stay in the cache folder; each run's last libFuzzer line (executions, exec/s)
# goes to $CACHE/NAME.log. Exit 1 if a harness found a crash (its reproducer is named).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${QUANTLM_FUZZ_CACHE:-$HOME/.cache/quantlm/fuzz}
SHARED=${QUANTLM_SHARED:-$ROOT/../shared}
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
WHICH=${1:-all}
SECONDS_EACH=${2:-60}
RUNS=${3:--1}
B=$CACHE/spm
CFG=release
ALL="qlm gguf safetensors llama2c tokenizers http"
ALL="$ALL hf"
[ "$WHICH" = all ] && WHICH=$ALL
mkdir -p "$CACHE/bin"

need() { [ -e "$1" ] || { echo "scripts/fuzz/run.sh: $1 not found ($2)" >&2; exit 2; }; }
need "$SHARED/models/stories260K/tok512.bin" "the shared folder: set QUANTLM_SHARED"

# 1. The libraries, instrumented (SwiftPM: one target at a time; libFuzzer's main is linked
#    only into the harnesses, so the package's executables are not built here).
for t in Runtime NIOHTTP1 NIOEmbedded; do
  nice -n 19 swift build --package-path "$ROOT" --build-path "$B" -c $CFG --sanitize=fuzzer --sanitize=address --target $t \
    > "$CACHE/build-$t.log" 2>&1 || { tail -20 "$CACHE/build-$t.log" >&2; exit 2; }
done
OUT=$B/$CFG
PKG=$(python3 - "$B/$CFG.yaml" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if '"-module-name","Quant"' in line:
        m = re.search(r'"-package-name","([^"]+)"', line)
        if m: print(m.group(1)); break
PY
)
[ -n "$PKG" ] || { echo "cannot find the package name in $B/$CFG.yaml" >&2; exit 2; }
MAPS=()
# C modules: SwiftPM's generated maps, and the packages' own (swift-atomics' _AtomicsShims, CKernels').
for m in "$OUT"/*.build/module.modulemap "$B"/checkouts/swift-*/Sources/*/include/module.modulemap "$ROOT/Sources/CZstd/module.modulemap" "$ROOT/Sources/CKernels/include/module.modulemap"; do
  [ -f "$m" ] && MAPS+=(-Xcc "-fmodule-map-file=$m")
done

# A target's object files: a Swift target's from its output-file-map.json (a renamed source's
# old object stays in the folder and must not be linked), a C target's by name.
objects() {
  if [ -f "$1/output-file-map.json" ]; then
    python3 -c 'import json, os, sys
m = json.load(open(sys.argv[1]))
print("\n".join(v["object"] for k, v in m.items() if k and os.path.exists(v.get("object", ""))))' "$1/output-file-map.json"
  else
    find "$1" -name '*.o'
  fi
}

link() { # name, extra sources..., -- object dirs...
  local name=$1; shift
  local srcs=() objs=()
  while [ "$1" != -- ]; do srcs+=("$1"); shift; done; shift
  for d in "$@"; do while IFS= read -r o; do objs+=("$o"); done < <(objects "$OUT/$d.build"); done
  local exe=$CACHE/bin/$name
  if [ -x "$exe" ] && [ -z "$(find "${srcs[@]}" "${objs[@]}" -newer "$exe" 2>/dev/null)" ]; then return; fi
  rm -f "$exe" # a failed link must not leave the previous binary to run
  nice -n 19 swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Fuzz_$name -package-name "$PKG" \
    -I "$OUT/Modules" "${MAPS[@]}" "${srcs[@]}" "${objs[@]}" -lzstd -o "$exe" 2>&1 | grep -v "Cannot export local symbol" || true
  [ -x "$exe" ] || { echo "scripts/fuzz/run.sh: linking $name failed" >&2; exit 2; }
}
NIO_DIRS=$(cd "$OUT" && ls -d *.build | sed 's/\.build$//' | grep -Ev '^(Quant|Runtime|CKernels|TestSupport|run|convert|ArgumentParser.*|.*Tests)$' | tr '\n' ' ')

# 2. Seeds: small files of each format (regenerated when missing).
seeds() {
  local h=$1 dir=$CACHE/corpus/$1
  mkdir -p "$dir"
  [ -n "$(ls -A "$dir")" ] && return
  case $h in
    qlm)
      python3 "$ROOT/scripts/fuzz/seeds.py" llama2c "$CACHE/seed-l2c.bin"
      FUZZ_SEED_FROM=$CACHE/seed-l2c.bin FUZZ_SEED_TOKENIZER=$SHARED/models/stories260K/tok512.bin FUZZ_SEED_TO=$dir/tiny.qlm \
        "$CACHE/bin/qlm" ;;
    gguf | safetensors | llama2c | tokenizers | http | hf) FUZZ_HF_FIXTURES=$ROOT/Tests/Fixtures/arch python3 "$ROOT/scripts/fuzz/seeds.py" "$h" "$dir" ;;
  esac
}

status=0
for h in $WHICH; do
  common=$ROOT/scripts/fuzz/common.swift
  case $h in
    http) link http "$ROOT/scripts/fuzz/http.swift" "$ROOT/Sources/run/Serve/HTTPServer.swift" -- $NIO_DIRS ;;
    *) link "$h" "$ROOT/scripts/fuzz/$h.swift" "$common" -- CKernels Quant Runtime ;;
  esac
  seeds "$h"
  env=(FUZZ_TOKENIZER="$SHARED/models/stories260K/tok512.bin" FUZZ_LLAMA2C_TOKENIZER="$SHARED/models/stories260K/tok512.bin")
  if [ "$h" = hf ]; then
    [ -f "$CACHE/hf-shards/model-00002-of-00002.safetensors" ] ||
      FUZZ_HF_FIXTURES=$ROOT/Tests/Fixtures/arch python3 "$ROOT/scripts/fuzz/seeds.py" hf-shards "$CACHE/hf-shards"
    env+=(FUZZ_HF_FIXTURES="$ROOT/Tests/Fixtures/arch" FUZZ_HF_SHARDS="$CACHE/hf-shards")
  fi
  [ -f "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" ] && env+=(FUZZ_BPE_GGUF="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf")
  [ -f "$MODELS/gemma-3-270m-q4_k_m.gguf" ] && env+=(FUZZ_SPM_GGUF="$MODELS/gemma-3-270m-q4_k_m.gguf")
  mkdir -p "$CACHE/crashes/$h"
  # Inputs past 64 KiB only cost time for the file formats (their seeds are <= 42 KiB).
  case $h in qlm | gguf | llama2c | hf) maxlen=65536 ;; *) maxlen=1048576 ;; esac
  echo "== $h: $SECONDS_EACH s (corpus $CACHE/corpus/$h)"
  set +e
  env "${env[@]}" ASAN_OPTIONS=detect_leaks=0 nice -n 19 "$CACHE/bin/$h" "$CACHE/corpus/$h" -max_total_time="$SECONDS_EACH" -runs="$RUNS" \
    -max_len=$maxlen -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 -artifact_prefix="$CACHE/crashes/$h/" > "$CACHE/$h.log" 2>&1
  rc=$?
  set -e
  grep -E "^(#[0-9]+ *(DONE|pulse)|stat::number_of_executed_units|stat::average_exec_per_sec)|FUZZ-NOTE|SUMMARY|ERROR" "$CACHE/$h.log" | tail -6
  if [ $rc -ne 0 ]; then echo "== $h: libFuzzer exit $rc, reproducer in $CACHE/crashes/$h/" >&2; status=1; fi
done
exit $status
