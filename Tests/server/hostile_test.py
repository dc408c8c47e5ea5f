#!/usr/bin/env python3
"""Sends >= 200 malformed or abusive requests to a running `run serve` over raw sockets and
checks that every answer is a proper HTTP error (a status line with 4xx, and for the API's own
errors an OpenAI error object) or, for requests the server must drop (slowloris, oversize), a
closed connection within the timeout; afterwards /health answers and a normal completion works.

    python3 hostile_test.py --port PORT --model ID [--read-timeout 2]

Prints one JSON line: counts by status. Exit 1 on the first wrong answer.
"""
import argparse, json, socket, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--model", required=True)
ap.add_argument("--read-timeout", type=float, default=2.0)
a = ap.parse_args()
HOST = "127.0.0.1"
counts = {}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def raw(data: bytes, timeout=10.0, slow=None):
    """Sends bytes (or chunks with pauses), returns (status or None, body bytes, closed)."""
    s = socket.create_connection((HOST, a.port), timeout=timeout)
    try:
        if slow:
            for part in data:
                s.sendall(part)
                time.sleep(slow)
        else:
            s.sendall(data)
        buf = b""
        while True:
            try:
                c = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            except socket.timeout:
                return None, buf, False
            if not c:
                break
            buf += c
            if b"\r\n\r\n" in buf:
                head, _, body = buf.partition(b"\r\n\r\n")
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0].split(b":")[1]):
                    break
        if not buf:
            return None, b"", True
        status = int(buf.split(b" ", 2)[1])
        return status, buf.partition(b"\r\n\r\n")[2], True
    finally:
        s.close()


def post(path, body: bytes, ctype=b"application/json", extra=b""):
    return raw(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\nConnection: close\r\n" + extra + b"\r\n" + body)


def expect_error(name, result, statuses, api_error=True):
    status, body, _ = result
    if status not in statuses:
        fail(f"{name}: status {status}, expected one of {statuses}; body {body[:200]!r}")
    if api_error:
        try:
            e = json.loads(body)["error"]
            assert isinstance(e["message"], str) and e["message"] and "type" in e
        except Exception:
            fail(f"{name}: not an OpenAI error object: {body[:200]!r}")
    counts[status] = counts.get(status, 0) + 1


M = a.model.encode()
cases = []
# 1. Bodies that are not JSON, or not an object.
for b in [b"", b"{", b"}", b"{bad", b"nul", b"[1,2", b"\xff\xfe\x00", b'"just a string"', b"42", b"[]",
          b"null", b"true", b'{"prompt": "\xff\xfe"}', b"{'prompt': 'single quotes'}", b'{"prompt": NaN}', b'{"prompt": Infinity}',
          b"\x00" * 100, b"{" * 100000, b"[" * 5000 + b"]" * 5000, b'{"a":' * 1000 + b"1" + b"}" * 1000]:
    cases.append(("not-json " + repr(b[:20]), b"/v1/completions", b))
# 2. Wrong types and values for each parameter.
bad_values = {
    "prompt": [b"5", b"null", b"{}", b"[]", b"[1.5]", b"[-1]", b"[99999999999]", b'["a","b"]', b"true", b'[["x"]]'],
    "max_tokens": [b"-1", b'"10"', b"1e400", b"1.5", b"99999999999999999999", b"true", b"[]", b"{}", b"-99999999999", b"1e12"],
    "temperature": [b"-0.1", b"2.5", b'"hot"', b"1e400", b"true", b"[]", b"-1e308"],
    "top_p": [b"0", b"-1", b"1.5", b'"x"', b"null1"],
    "top_k": [b"-5", b"1.5", b'"k"', b"99999999999"],
    "seed": [b'"s"', b"1.5", b"[]", b"1e30"],
    "stop": [b"5", b"[1]", b'["a","b","c","d","e"]', b"{}", b'["' + b"x" * 300 + b'"]'],
    "n": [b"2", b"0", b"-1", b'"1"'],
    "stream": [b'"yes"', b"1", b"[]"],
    "model": [b"5", b'"other-model"', b"[]", b"null1"],
}
for key, vals in bad_values.items():
    for v in vals:
        extra = b'' if key == "prompt" else b'"prompt": "Once", '
        cases.append((f"bad {key}={v[:20]!r}", b"/v1/completions", b"{" + extra + b'"' + key.encode() + b'": ' + v + b"}"))
# 3. Chat requests with bad messages (stories260K has no template: 400 either way).
for m in [b"[]", b"{}", b'"hi"', b"[1]", b'[{"role": 5}]', b'[{"role": "wizard", "content": "x"}]', b'[{"role": "user"}]',
          b'[{"role": "user", "content": 5}]', b'[{"role": "user", "content": [{"type": "image"}]}]', b"null"]:
    cases.append((f"chat messages={m[:20]!r}", b"/v1/chat/completions", b'{"model": "' + M + b'", "messages": ' + m + b"}"))
# 4. Over-long prompts (the numbers are in the message).
cases.append(("long prompt ids", b"/v1/completions", b'{"prompt": [' + b",".join([b"1"] * 50000) + b"]}"))
cases.append(("long prompt text", b"/v1/completions", b'{"prompt": "' + b"once upon a time " * 20000 + b'"}'))
cases.append(("max_tokens past ctx", b"/v1/completions", b'{"prompt": "x", "max_tokens": 100000000}'))

# The same bad parameters on the chat endpoint.
for key, vals in bad_values.items():
    for v in vals:
        cases.append((f"chat bad {key}={v[:20]!r}", b"/v1/chat/completions",
                      b'{"messages": [{"role": "user", "content": "hi"}], "' + key.encode() + b'": ' + v + b"}"))
# Every proper prefix of a valid body is invalid JSON.
valid = b'{"model": "' + M + b'", "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "stop": ["x"]}'
for n in range(0, len(valid) - 1, max(1, len(valid) // 40)):
    cases.append((f"truncated at {n}", b"/v1/completions", valid[:n]))

for name, path, body in cases:
    expect_error(name, post(path, body), {400, 404, 413})

# Random byte flips of the valid body: an answer is either a completion or a proper error.
import random
rng = random.Random(1234)
for i in range(60):
    b = bytearray(valid)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    st, body, _ = post(b"/v1/completions", bytes(b))
    if st == 200:
        json.loads(body)["choices"]
        counts[200] = counts.get(200, 0) + 1
    else:
        expect_error(f"flipped {bytes(b)[:40]!r}", (st, body, True), {400, 404})

# 5. Methods, paths, HTTP-level garbage.
expect_error("GET completions", raw(b"GET /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), {405})
expect_error("DELETE models", raw(b"DELETE /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), {405})
expect_error("PUT health", raw(b"PUT /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), {405})
for p in [b"/", b"/v1", b"/v2/completions", b"/v1/completions/x", b"/" + b"a" * 4000, b"/%00", b"/../../etc/passwd"]:
    expect_error(f"path {p[:20]!r}", raw(b"GET " + p + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), {404})
for g in [b"HELLO\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
          b"POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
          b"POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
          b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
          b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 100000 + b"\r\n\r\n",
          b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(5000)) + b"\r\n"]:
    status, body, closed = raw(g)
    if status is not None and not (400 <= status < 500):
        fail(f"garbage {g[:20]!r}: status {status}")
    if status is None and not closed:
        fail(f"garbage {g[:20]!r}: connection left open")
    counts[status or "closed"] = counts.get(status or "closed", 0) + 1

# 6. Oversize bodies: declared (413 before reading it) and actually sent (10 MB).
expect_error("declared 10 MB", raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n{"), {413})
big = b'{"prompt": "' + b"a" * (10 << 20) + b'"}'
try:
    st, body, _ = raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
    if st != 413:
        fail(f"10 MB chunked body: status {st}")
    counts[413] = counts.get(413, 0) + 1
except (ConnectionResetError, BrokenPipeError):
    counts["reset"] = counts.get("reset", 0) + 1   # the server answered 413 and closed while we were still sending

# 7. Slowloris: partial requests that never finish are closed after the read timeout.
t0 = time.time()
for part in [b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n", b"GET /health HTTP/1.1\r\nHo",
             b"POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"pro"]:
    st, body, closed = raw(part, timeout=a.read_timeout * 4)
    if st is None and not closed:
        fail(f"slowloris {part[:30]!r}: still open after {a.read_timeout * 4} s")
    counts[st or "closed"] = counts.get(st or "closed", 0) + 1
slow = raw([b"GET /hea", b"lth HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n", b"\r\n"], slow=0.2)
if slow[0] != 200:
    fail(f"a slow but complete request should be served: {slow[0]}")

total = sum(counts.values())
if total < 200:
    fail(f"only {total} hostile cases")
# 8. Still healthy, still serving.
st, body, _ = raw(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
if st != 200 or json.loads(body)["status"] != "ok":
    fail(f"health after the abuse: {st} {body[:100]!r}")
st, body, _ = post(b"/v1/completions", b'{"model": "' + M + b'", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}')
if st != 200 or not json.loads(body)["choices"][0]["text"]:
    fail(f"completion after the abuse: {st} {body[:200]!r}")
print(json.dumps({"ok": True, "cases": total, "by_status": {str(k): v for k, v in counts.items()}}))
