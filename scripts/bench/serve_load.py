#!/usr/bin/env python3
"""Bounded load on an OpenAI-compatible server over loopback: C concurrent streaming clients,
each sending R completions in a row; reports per concurrency level aggregate decode tok/s,
time-to-first-token and inter-token latency (p50/p99), errors and the server's peak RSS.

    python3 scripts/bench/serve_load.py --url http://127.0.0.1:8080 --model ID --pid SERVER_PID \
        [--clients 1,2,4,8] [--requests 50] [--max-tokens 32] [--prompts FILE] [--json]

Works against `run serve` and llama-server alike (both speak /v1/completions with SSE). Prompts
are the first lines of TinyStories validation stories (QUANTLM_SHARED), one per request, greedy.
"""
import argparse, http.client, json, os, statistics, sys, threading, time, urllib.parse


def peak_rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None


def one_request(host, port, model, prompt, max_tokens):
    """Streams one completion; returns (ttft, [inter-token gaps], tokens, error)."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    try:
        c = http.client.HTTPConnection(host, port, timeout=300)
        c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            return None, [], 0, f"HTTP {r.status}: {r.read()[:200]!r}"
        ttft, last, gaps, pieces, usage = None, None, [], 0, None
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if not ev.startswith(b"data: "):
                    continue
                data = ev[6:]
                if data == b"[DONE]":
                    continue
                obj = json.loads(data)
                if obj.get("usage"):
                    usage = obj["usage"]
                ch = obj.get("choices") or []
                if ch and ch[0].get("text"):
                    now = time.perf_counter()
                    if ttft is None:
                        ttft = now - t0
                    else:
                        gaps.append(now - last)
                    last = now
                    pieces += 1
        c.close()
        tokens = usage["completion_tokens"] if usage else pieces
        return ttft, gaps, tokens, None
    except Exception as e:
        return None, [], 0, repr(e)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_level(host, port, model, prompts, clients, requests, max_tokens, pid):
    results, lock = [], threading.Lock()

    def client(ci):
        for r in range(requests):
            p = prompts[(ci * requests + r) % len(prompts)]
            res = one_request(host, port, model, p, max_tokens)
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in ts: t.start()
    for t in ts: t.join()
    wall = time.perf_counter() - t0
    ttfts = [r[0] for r in results if r[0] is not None]
    gaps = [g for r in results for g in r[1]]
    tokens = sum(r[2] for r in results)
    errors = [r[3] for r in results if r[3]]
    return {"clients": clients, "requests": len(results), "tokens": tokens, "seconds": round(wall, 2),
            "aggregate_tok_s": round(tokens / wall, 1),
            "ttft_p50_ms": round(1000 * pct(ttfts, 50), 1) if ttfts else None,
            "ttft_p99_ms": round(1000 * pct(ttfts, 99), 1) if ttfts else None,
            "itl_p50_ms": round(1000 * pct(gaps, 50), 2) if gaps else None,
            "itl_p99_ms": round(1000 * pct(gaps, 99), 2) if gaps else None,
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "peak_rss_mb": round(peak_rss_kb(pid) / 1024, 1) if pid and peak_rss_kb(pid) else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompts")
    ap.add_argument("--label", default="")
    ap.add_argument("--task", choices=["first-sentence", "repeat"], default="first-sentence",
                    help="first-sentence: continue a story's first sentence; repeat: a ChatML prompt asking to repeat a "
                         "whole 80-150-word story word for word, its first 6 words already answered (input-grounded: "
                         "what prompt-lookup speculation is for)")
    a = ap.parse_args()
    if a.requests < 1 or a.max_tokens < 1:
        sys.exit("--requests and --max-tokens must be >= 1")
    u = urllib.parse.urlparse(a.url)
    shared = os.environ.get("QUANTLM_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
    path = a.prompts or os.path.join(shared, "data/tinystories/tinystories_valid_first1000.txt")
    stories = open(path, encoding="utf-8").read().split("<|endoftext|>")
    if a.task == "repeat":
        short = [s.strip() for s in stories if 80 <= len(s.split()) <= 150]
        prompts = [f"<|im_start|>user\nRepeat this story word for word:\n\n{s}<|im_end|>\n<|im_start|>assistant\n"
                   + " ".join(s.split()[:6]) for s in short][:500]
    else:
        prompts = [s.strip().split(". ")[0] + "." for s in stories if s.strip()][:500]
    for c in [int(x) for x in a.clients.split(",")]:
        r = run_level(u.hostname, u.port, a.model, prompts, c, a.requests, a.max_tokens, a.pid)
        r["label"] = a.label
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
