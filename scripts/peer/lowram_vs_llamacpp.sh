#!/usr/bin/env bash
# QuantLM vs llama.cpp inside a memory cgroup smaller than the model file (issue 29), with
# QuantLM's default flags (no --memory-budget: auto). As root: each run gets a fresh memory cgroup
# (v2 where its memory controller is delegated, else v1 /sys/fs/cgroup/memory) whose limit is
# 1/2 or 1/3 of the model file, the whole process counted (page cache included), and both model
# files' pages are evicted first (posix_fadvise DONTNEED). SmolLM2-135M Q8_0 and Q4_0 (llama-quantize'd
# from the shipped Q4_1, converted q8_0x8 / q4_0x8) and Gemma 3 270M (its Q4_K_M GGUF, converted
# --type keep; TYPES word gemma3), 2 threads:
#   decode   llama-bench -p 0 -n NGEN with each load mode (-lm mmap, none = --no-mmap, dio = O_DIRECT), TIMEOUT s each, vs
#            run bench --prompt-tokens 16 --gen-tokens NGEN --reps REPS (decode, streamed bytes/token
#            and the in-run disk probe: share = streamed GB/s / probe GB/s; time per token is
#            1/share of streamed bytes ÷ probe speed; with direct reads the probe is the loader's
#            own read pattern before the first rep and after each, the share per rep against the
#            reads around it, median over reps; the file's 4 MiB probe's ratio beside it), once per
#            READS mode (QUANTLM_STREAM_READS: direct = O_DIRECT reads of each layer's span,
#            buffered = pread through the page cache) and per build in BINS (build dirs, e.g.
#            "/tmp/old .build/release" for an A/B) and per PIECES value (QUANTLM_STREAM_PIECES: O_DIRECT
#            reads in flight, the loader's threads, "1 2" for an A/B; default: the build's), alternating ROUNDS times
#   lookup   run generate on the story-repeat prompt (scripts/bench/bench_speculative.sh's "repeat
#            story A", in the model's chat format), plain and --speculative lookup, SPECTOK tokens,
#            with generate --json's disk probe and share
#   serve    run serve --parallel 8 vs llama-server --parallel 4 (1/2 limit only), scripts/bench/serve_load.py
#            at 1, 4, 8 streaming clients x REQUESTS completions of MAXTOK tokens
# Every QuantLM run's exit status and the cgroup's oom_kill count are printed (137 / oom_kill > 0:
# killed). llama.cpp (this build takes -lm/--load-mode instead of --no-mmap) runs are skipped when its binaries are missing (scripts/peer/build_llamacpp.sh).
#
#   sudo scripts/peer/lowram_vs_llamacpp.sh   # env: TYPES="Q8_0 Q4_0 gemma3" FRACTIONS="2 3" PARTS="decode lookup serve"
#                                             #      READS="direct buffered" ROUNDS=1 REPS=5 LLAMA=1 (0: QuantLM only)
#                                             #      BINS="$QUANTLM_BIN" PIECES=default (several: alternated per round)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "error: needs root to make memory cgroups" >&2; exit 2; }
PEER=${QUANTLM_PEER:-$HOME/.cache/quantlm/peer}/build/bin
MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
SHARED=${QUANTLM_SHARED:-../shared}
OUT=${OUT:-/tmp/quantlm-lowram}
B=${QUANTLM_BIN:-.build/release}
TYPES=${TYPES:-"Q8_0 Q4_0 gemma3"} FRACTIONS=${FRACTIONS:-"2 3"} PARTS=${PARTS:-"decode lookup serve"}
READS=${READS:-"direct buffered"} ROUNDS=${ROUNDS:-1} LLAMA=${LLAMA:-1} REPS=${REPS:-5} BINS=${BINS:-$B} PIECES=${PIECES:-default}
NGEN=${NGEN:-16} TIMEOUT=${TIMEOUT:-120} SPECTOK=${SPECTOK:-96} REQUESTS=${REQUESTS:-4} MAXTOK=${MAXTOK:-32}
PORT=${PORT:-18097}
mkdir -p "$OUT"
[ -x $B/run ] || { echo "error: build first: swift build -c release" >&2; exit 2; }
src=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$src" ] || { echo "error: $src missing: scripts/fetch_models.sh" >&2; exit 2; }
have_llama=0; [ -x "$PEER/llama-bench" ] && [ -x "$PEER/llama-server" ] && [ -x "$PEER/llama-quantize" ] && have_llama=1
[ $have_llama = 1 ] || echo "# llama.cpp binaries missing in $PEER: QuantLM runs only"
[ "$LLAMA" = 1 ] || have_llama=0

# Memory cgroup: v2 when the unified root delegates memory, else v1.
if grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
  CGROOT=/sys/fs/cgroup; CGV=2
elif [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
  CGROOT=/sys/fs/cgroup/memory; CGV=1
else
  echo "error: no memory cgroup controller (v2 subtree_control or v1 /sys/fs/cgroup/memory)" >&2; exit 2
fi
CG=$CGROOT/quantlm-lowram-$$
cleanup() {
  [ -d "$CG" ] || return 0
  for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CG" 2>/dev/null && return 0; sleep 0.2; done
}
trap cleanup EXIT
cg_make() {  # LIMIT_BYTES
  cleanup; mkdir "$CG"
  if [ $CGV = 2 ]; then echo "$1" > "$CG/memory.max"; echo 0 > "$CG/memory.swap.max" 2>/dev/null || true
  else echo "$1" > "$CG/memory.limit_in_bytes"; fi
}
cg_ooms() { if [ $CGV = 2 ]; then awk '/^oom_kill /{print $2}' "$CG/memory.events"; else awk '/^oom_kill /{print $2}' "$CG/memory.oom_control"; fi; }
cg_peak() { if [ $CGV = 2 ]; then cat "$CG/memory.peak" 2>/dev/null || echo 0; else cat "$CG/memory.max_usage_in_bytes"; fi; }
# Runs a command inside the cgroup (the shell moves itself in, then execs).
incg() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }
evict() { python3 - "$@" <<'PY'
import os, sys
for p in sys.argv[1:]:
    if os.path.exists(p):
        fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
PY
}

# The models: llama.cpp's Q8_0 / Q4_0 requantized from the shipped Q4_1, QuantLM's converted from
# those GGUFs; Gemma 3's GGUF as fetched, QuantLM's --type keep (its ggml blocks byte for byte).
gguf_of() { if [ "$1" = gemma3 ]; then echo "$MODELS/gemma-3-270m-q4_k_m.gguf"; else echo "$MODELS/SmolLM2-135M-Instruct.$1-from-Q4_1.gguf"; fi; }
qlm_of() { if [ "$1" = gemma3 ]; then echo "$OUT/gemma3-keep.qlm"; else echo "$OUT/smol-$1.qlm"; fi; }
for t in $TYPES; do
  g=$(gguf_of $t); q=$(qlm_of $t)
  if [ $t = gemma3 ]; then
    [ -f "$g" ] || { echo "error: $g missing: scripts/fetch_models.sh --gemma" >&2; exit 2; }
    [ -f "$q" ] || $B/convert "$g" -o "$q" --type keep --quiet > /dev/null
    continue
  fi
  if [ ! -f "$g" ] && [ $have_llama = 1 ]; then "$PEER/llama-quantize" --allow-requantize "$src" "$g" "$t" > /dev/null 2>&1; fi
  qt=$(echo $t | tr A-Z a-z)x8
  if [ ! -f "$q" ]; then
    if [ -f "$g" ]; then $B/convert "$g" -o "$q" --type "$qt" --quiet > /dev/null; else $B/convert "$src" -o "$q" --type "$qt" --quiet > /dev/null; fi
  fi
done

# scripts/bench/bench_speculative.sh's "repeat story A" prompt in SmolLM2's and Gemma 3's chat formats.
python3 - "$SHARED" "$OUT" <<'PY'
import os, sys
text = open(os.path.join(sys.argv[1], "data/tinystories/tinystories_valid_first1000.txt")).read()
short = [s.strip() for s in text.split("<|endoftext|>") if 80 <= len(s.split()) <= 150]
s = short[0]
ask, start = f"Repeat this story word for word:\n\n{s}", " ".join(s.split()[:6])
open(os.path.join(sys.argv[2], "story-repeat.txt"), "w").write(f"<|im_start|>user\n{ask}<|im_end|>\n<|im_start|>assistant\n{start}")
open(os.path.join(sys.argv[2], "story-repeat-gemma3.txt"), "w").write(f"<start_of_turn>user\n{ask}<end_of_turn>\n<start_of_turn>model\n{start}")
PY

echo "# $(date -u +%FT%TZ) cgroup v$CGV, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for t in $TYPES; do
  g=$(gguf_of $t); q=$(qlm_of $t)
  story=$OUT/story-repeat.txt; [ $t = gemma3 ] && story=$OUT/story-repeat-gemma3.txt
  size=$(stat -c %s "$q")
  for f in $FRACTIONS; do
    lim=$((size / f)); tag="$t 1/$f ($((lim >> 20)) MiB of $((size >> 20)) MiB)"
    if [[ " $PARTS " == *" decode "* ]]; then
      for round in $(seq $ROUNDS); do for bin in $BINS; do for pieces in $PIECES; do for reads in $READS; do
      [ -x "$bin/run" ] || { echo "error: $bin/run missing" >&2; exit 2; }
      cg_make $lim; evict "$q" "$g"
      btag=""; [ "$BINS" = "$B" ] || btag=", $bin"
      if [ "$pieces" = default ]; then unset QUANTLM_STREAM_PIECES; else export QUANTLM_STREAM_PIECES=$pieces; btag="$btag, $pieces in flight"; fi
      set +e; QUANTLM_STREAM_READS=$reads incg $bin/run bench "$q" --prompt-tokens 16 --gen-tokens $NGEN --reps $REPS --threads 2 --json > "$OUT/bench-$t-$f-$reads.json" 2> "$OUT/bench-$t-$f-$reads.err"; rc=$?; set -e
      python3 - "$OUT/bench-$t-$f-$reads.json" "$rc" "$(cg_ooms)" "$(cg_peak)" "$tag, $reads reads$btag, round $round" <<'PY'
import json, sys
path, rc, ooms, peak, tag = sys.argv[1:6]
try: j = json.load(open(path))
except Exception: print(f"{tag}: QuantLM bench exit {rc}, oom_kill {ooms}: no result"); sys.exit(0)
d = j["decode_tokens_per_second"]["median"]; m = j["memory_plan"]; dp = j.get("disk_probe") or {}
sb = m["streamed_bytes_per_token"]; share = j.get("streamed_share_of_disk_probe")
gb = (dp.get("gb_per_second") or {}).get("median")
bound = f", time/token {1/share:.2f}x of streamed/probe" if share else ""
if dp.get("pattern"): bound += f" ({dp['pattern']} probe, {dp.get('pieces')} in flight, {dp['buffer_bytes'] / 2**20:.2f} MiB reads)"
per = j.get("streamed_share_of_disk_probe_per_rep")
if per: bound += ", per rep " + " ".join(f"{1/x:.2f}x" for x in per)
ff = j.get("streamed_share_of_disk_probe_file")
if ff: bound += f"; against the file probe ({(j['disk_probe_file']['gb_per_second']['median']):.2f} GB/s) {1/ff:.2f}x"
busy = m.get("loader_read_seconds_per_token")
if busy: bound += f", loader reading {busy * d:.2f} of the decode time"
print(f"{tag}: QuantLM decode {d:.1f} tok/s (exit {rc}, oom_kill {ooms}, cgroup peak {int(peak) / 2**20:.1f} MiB), "
      f"budget {(m.get('budget_bytes') or 0) / 2**20:.1f} MiB, streamed {sb / 2**20:.1f} MiB/token, disk probe "
      f"{gb if gb is None else round(gb, 2)} GB/s (O_DIRECT {dp.get('o_direct')}), share {share if share is None else round(share, 2)}{bound}")
PY
      done; done; done; done
      unset QUANTLM_STREAM_PIECES
      if [ $have_llama = 1 ]; then
        for mmp in mmap none dio; do
          cg_make $lim; evict "$q" "$g"
          # (in a subshell: the shell's "Killed" line for an OOM kill goes to /dev/null with the rest)
          set +e; ( timeout $TIMEOUT sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$PEER/llama-bench" -m "$g" -t 2 -p 0 -n $NGEN -r 1 -lm $mmp -o json > "$OUT/llama-$t-$f-$mmp.json"; r=$?; exit $r ) 2>/dev/null; rc=$?; set -e
          python3 - "$OUT/llama-$t-$f-$mmp.json" "$rc" "$(cg_ooms)" "$tag" "$mmp" "$TIMEOUT" <<'PY'
import json, sys
path, rc, ooms, tag, mmp, to = sys.argv[1:7]
name = {"mmap": "mmap", "none": "--no-mmap (-lm none)", "dio": "direct I/O (-lm dio)"}[mmp]
try: tg = next(x["avg_ts"] for x in json.load(open(path)) if x["n_gen"] > 0); print(f"{tag}: llama.cpp {name} decode {tg:.2f} tok/s (exit {rc}, oom_kill {ooms})")
except Exception: print(f"{tag}: llama.cpp {name}: no result in {to} s (exit {rc}, oom_kill {ooms})")
PY
        done
      fi
    fi
    if [[ " $PARTS " == *" lookup "* ]]; then
      for spec in plain lookup; do
        cg_make $lim; evict "$q"
        extra=(); [ $spec = lookup ] && extra=(--speculative lookup)
        set +e; incg $B/run generate "$q" --prompt-file "$story" --max-tokens $SPECTOK --temperature 0 --ignore-eos --threads 2 --json "${extra[@]}" > "$OUT/gen-$t-$f-$spec.json" 2>/dev/null; rc=$?; set -e
        python3 - "$OUT/gen-$t-$f-$spec.json" "$rc" "$(cg_ooms)" "$tag" "$spec" <<'PY'
import json, sys
path, rc, ooms, tag, spec = sys.argv[1:6]
try: j = json.load(open(path)); r = j["result"]
except Exception: print(f"{tag}: QuantLM generate {spec}: exit {rc}, oom_kill {ooms}, no result"); sys.exit(0)
sp = r.get("speculative") or {}
acc = f", accepted {100 * sp['acceptance_rate']:.0f}%, {sp['passes']} passes" if sp else ""
share = j.get("streamed_share_of_disk_probe")
disk = f", streamed {r['memory_plan']['streamed_bytes_per_token'] / 2**20:.1f} MiB/token, share of the disk probe {share:.2f}" if share else ""
ids = sum((i + 1) * t for i, t in enumerate(r["tokens"])) & 0xffff
print(f"{tag}: QuantLM generate story-repeat {spec} {r['decode_tokens_per_second']:.1f} tok/s (exit {rc}, oom_kill {ooms}{acc}{disk}); ids {ids:04x}")
PY
      done
    fi
    if [[ " $PARTS " == *" serve "* ]] && [ "$f" = 2 ]; then
      for who in quantlm llama; do
        [ $who = llama ] && [ $have_llama = 0 ] && continue
        cg_make $lim; evict "$q" "$g"
        if [ $who = quantlm ]; then
          incg $B/run serve "$q" --port $PORT --parallel 8 --ctx 512 --threads 2 > "$OUT/serve-$t.log" 2>&1 & model=$(basename "$q")
        else
          incg "$PEER/llama-server" -m "$g" --host 127.0.0.1 --port $PORT --parallel 4 -c 2048 -t 2 > "$OUT/llama-server-$t.log" 2>&1 & model=smol
        fi
        pid=$!
        up=0; for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && { up=1; break; }; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
        if [ $up = 1 ]; then
          python3 scripts/bench/serve_load.py --url "http://127.0.0.1:$PORT" --model "$model" --pid $pid --clients 1,4,8 \
            --requests $REQUESTS --max-tokens $MAXTOK --label "$who $tag" || true
        else
          echo "$tag: $who server did not come up (oom_kill $(cg_ooms))"
        fi
        kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
        echo "$tag: $who server oom_kill $(cg_ooms), cgroup peak $(( $(cg_peak) >> 20 )) MiB"
      done
    fi
  done
done
