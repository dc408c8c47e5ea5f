#!/usr/bin/env bash
# Is the layer loader's O_DIRECT read pattern slower than a plain sequential read of the same file,
# and would two reads in flight pay? (scripts/bench/harness/disk_reads.c; issue 29's spread of
# time per token against the disk probe.) Patterns alternate in ROUNDS rounds in one process:
# sequential CHUNK_KB reads; two / four threads reading alternate chunks of CHUNK_KB, CHUNK_KB/2
# and CHUNK_KB/4 (that many reads always in flight); one chunk at a time cut into two / four
# pieces read at once (the loader's split item read, QUANTLM_STREAM_PIECES); seq and two in flight
# and halves into transparent-huge-page buffers (seqH, qd2H, halvesH: the loader's buffers of whole 2 MiB pages); and with --trace
# the loader's own reads as issued and cut at 4 MiB-aligned offsets. Each round starts at the
# next pattern in turn. A trace comes from a streamed run under strace:
#   strace -f -T -e trace=pread64 -o ST run bench MODEL.qlm --prompt-tokens 16 --gen-tokens 16 --json
# (inside the memory cgroup so that it streams); --strace ST takes the thread with the most reads of >= 1 MiB.
#
#   scripts/bench/disk_reads.sh FILE [--rounds N] [--chunk KB] [--strace ST]   (default 6 rounds, 3680 KiB)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
rounds=6 chunk=3680 st="" file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2;;
    --chunk) chunk="${2:?--chunk needs KiB}"; shift 2;;
    --strace) st="${2:?--strace needs a file}"; shift 2;;
    -h|--help) sed -n '2,10p' "$0"; exit 0;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2;;
    *) file="$1"; shift;;
  esac
done
[ -n "$file" ] || { echo "error: name the file to read (see --help)" >&2; exit 2; }
[ -f "$file" ] || { echo "error: $file: no such file" >&2; exit 2; }
CC="${CC:-clang}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$CC" -O2 -o "$tmp/disk_reads" "$here/scripts/bench/harness/disk_reads.c" -lpthread
trace=()
if [ -n "$st" ]; then
  [ -f "$st" ] || { echo "error: $st: no such file" >&2; exit 2; }
  # strace -f lines: PID TIME pread64(FD, ..., BYTES, OFFSET) = N <SECONDS>
  sed -nE 's/^([0-9]+) .*pread64\([0-9]+, .*, ([0-9]+), ([0-9]+)\) = [0-9]+ <[0-9.]+>$/\1 \2 \3/p' "$st" \
    | awk '$2 >= 1048576' > "$tmp/all"
  pid=$(awk '{print $1}' "$tmp/all" | sort | uniq -c | sort -rn | awk 'NR==1{print $2}')
  [ -n "$pid" ] || { echo "error: $st: no pread64 of 1 MiB or more" >&2; exit 2; }
  awk -v p="$pid" '$1 == p {print $2, $3}' "$tmp/all" > "$tmp/trace"
  echo "# trace: $(wc -l < "$tmp/trace") reads of thread $pid"
  trace=("$tmp/trace")
fi
echo "# $(date -u +%FT%TZ) $file, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/disk_reads" "$file" "$rounds" "$chunk" "${trace[@]}"
