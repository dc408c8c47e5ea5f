#!/usr/bin/env python3
"""Drives a running `run serve` with the official `openai` Python client (pip install openai).

    python3 openai_client_test.py --base-url http://127.0.0.1:PORT/v1 --model ID \
        --run .build/release/run --qlm model.qlm [--chat]

Checks, each an assertion that names what differed:
  models list; completions greedy (streamed and not) identical to `run generate`'s text for the
  same prompt; usage counts; stop sequences (cut before the stop, finish_reason "stop"), also
  streamed; seeded sampling reproducible and seed-dependent; 4 concurrent streamed requests each
  identical to the greedy text (batching must not change a sequence); errors as openai's
  exception types (unknown model 404, negative max_tokens 400, over-long prompt 400 with the
  numbers); with --chat: chat completions streamed and not, identical greedy text, ending at the
  end-of-turn token. Prints one JSON line of what it ran; exit 1 on the first failure.
"""
import argparse, json, subprocess, sys, threading, urllib.error, urllib.request

import openai


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--run", required=True, help="the run executable")
    ap.add_argument("--qlm", required=True, help="the served .qlm (for run generate)")
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--chat", action="store_true")
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key="none", max_retries=0, timeout=120)
    ran = []

    def check(cond, what):
        if not cond:
            print("FAIL: " + what, file=sys.stderr)
            sys.exit(1)
        ran.append(what.split(":")[0])

    ids = [m.id for m in client.models.list().data]
    check(ids == [a.model], f"models: {ids}")

    # The reference: run generate, greedy, the same prompt and token count.
    g = subprocess.run([a.run, "generate", a.qlm, "--prompt", a.prompt, "--max-tokens", str(a.tokens),
                        "--temperature", "0", "--json"], capture_output=True, text=True, check=True)
    res = json.loads(g.stdout.strip().splitlines()[-1])["result"]
    full = res["text"]
    expected = full[len(a.prompt):] if full.startswith(a.prompt) else full
    n = len(res["tokens"])
    finish = "length" if n == a.tokens else "stop"   # run generate stops at the end-of-text token too
    check(n >= 8, f"generate produced {n} tokens")

    # POST /tokenize: the ids a completion of that prompt prefills (not an OpenAI endpoint: plain HTTP).
    root = a.base_url.rsplit("/v1", 1)[0]
    def tokenize(body):
        req = urllib.request.Request(root + "/tokenize", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, timeout=30).read())
    toks = tokenize({"content": a.prompt})["tokens"]
    check(toks == res["prompt_tokens"], f"tokenize: {toks} vs run generate's prompt tokens {res['prompt_tokens']}")
    try:
        tokenize({"text": a.prompt})
        check(False, "tokenize without content accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 400 and "content" in json.loads(e.read())["error"]["message"], f"tokenize without content: {e.code}")

    r = client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.tokens, temperature=0)
    check(r.choices[0].text == expected, f"completions greedy: {r.choices[0].text!r} vs run generate {expected!r}")
    check(r.choices[0].finish_reason == finish, f"finish_reason: {r.choices[0].finish_reason}")
    check(r.usage.completion_tokens == n and r.usage.prompt_tokens == len(res["prompt_tokens"]),
          f"usage: {r.usage} vs prompt {len(res['prompt_tokens'])} + {n}")

    chunks = list(client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.tokens, temperature=0, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    check(text == expected, f"completions stream: {text!r} vs {expected!r}")
    check(chunks[-1].choices[0].finish_reason == finish, f"stream finish_reason: {chunks[-1].choices[0].finish_reason}")

    # Stop sequences: the completion ends before the first occurrence of any of them.
    words = expected.split(" ")
    stop = " " + words[min(4, len(words) - 1)]
    cut = expected[: expected.index(stop)]
    r = client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.tokens, temperature=0, stop=[stop, "\u2603never"])
    check(r.choices[0].text == cut and r.choices[0].finish_reason == "stop", f"stop {stop!r}: {r.choices[0].text!r} ({r.choices[0].finish_reason}) vs {cut!r}")
    chunks = list(client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.tokens, temperature=0, stop=stop, stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    check(text == cut and chunks[-1].choices[0].finish_reason == "stop", f"stream stop {stop!r}: {text!r} vs {cut!r}")

    # Seeded sampling: the same seed gives the same text; some other seed gives another.
    def sample(seed):
        return client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.tokens, temperature=1.0, top_p=0.95,
                                         seed=seed).choices[0].text
    s7 = sample(7)
    check(sample(7) == s7, "seeded sampling reproducible")
    check(any(sample(s) != s7 for s in (8, 9, 10)), "seed changes the sample")

    # Concurrency: 4 streamed greedy requests at once, each the same text as alone.
    out = [None] * 4
    def worker(i):
        cs = client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.tokens, temperature=0, stream=True)
        out[i] = "".join(c.choices[0].text for c in cs if c.choices)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    check(all(o == expected for o in out), f"concurrent streams: {out}")

    # Errors, as the client's exception types.
    try:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        check(False, "unknown model accepted")
    except openai.NotFoundError as e:
        check("no-such-model" in str(e), f"unknown model: {e}")
    try:
        client.completions.create(model=a.model, prompt="x", max_tokens=-1)
        check(False, "negative max_tokens accepted")
    except openai.BadRequestError as e:
        check("max_tokens" in str(e), f"negative max_tokens: {e}")
    try:
        client.completions.create(model=a.model, prompt=[1] * 100000, max_tokens=1)
        check(False, "over-long prompt accepted")
    except openai.BadRequestError as e:
        check("100000 tokens" in str(e), f"over-long prompt: {e}")

    if a.chat:
        msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        r = client.chat.completions.create(model=a.model, messages=msgs, max_tokens=48, temperature=0)
        reply = r.choices[0].message.content
        check(r.choices[0].message.role == "assistant" and reply.strip() != "", f"chat reply: {reply!r}")
        check(r.choices[0].finish_reason == "stop", f"chat ends at the end of its turn: {r.choices[0].finish_reason} {reply!r}")
        check("<|im_end|>" not in reply and "<end_of_turn>" not in reply, f"end-of-turn token not in the text: {reply!r}")
        cs = list(client.chat.completions.create(model=a.model, messages=msgs, max_tokens=48, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
        text = "".join((c.choices[0].delta.content or "") for c in cs if c.choices)
        check(text == reply, f"chat stream {text!r} vs {reply!r}")
        check(cs[-1].usage is not None and cs[-1].usage.completion_tokens == r.usage.completion_tokens, f"stream usage: {cs[-1].usage}")
    print(json.dumps({"ok": True, "checks": len(ran)}))


if __name__ == "__main__":
    main()
