"""Independent Python port of llama2.c run.c's tokenizer (the test oracle).

File format: int32 max_token_length, then per token: float32 score, int32 len, len bytes.
encode(text, bos, eos) follows run.c's encode():
  1. BOS (id 1) if bos.
  2. If the text is non-empty, the token for " " (the dummy prefix).
  3. Walk UTF-8: a byte that is not a continuation (b & 0xC0 != 0x80) starts a new buffer;
     the buffer is looked up once the next byte is not a continuation byte or it holds 4 bytes.
     Found -> that id; not found -> each byte b becomes id b + 3 (byte fallback).
  4. Repeat: over adjacent pairs (including BOS), concatenate their pieces (as C strings), and
     among those present in the vocab pick the one with the highest score (strict >, starting
     from -1e10, so the first pair wins ties); replace the pair by it. Stop when none.
  5. EOS (id 2) if eos.
"""
import struct


class Llama2cTokenizer:
    def __init__(self, path, vocab_size):
        with open(path, "rb") as f:
            data = f.read()
        (self.max_token_length,) = struct.unpack_from("<i", data, 0)
        off = 4
        self.pieces, self.scores = [], []
        for _ in range(vocab_size):
            score, n = struct.unpack_from("<fi", data, off)
            off += 8
            self.pieces.append(data[off:off + n])
            off += n
            self.scores.append(score)
        self.index = {}
        for i, p in enumerate(self.pieces):
            self.index.setdefault(p, i)

    @staticmethod
    def _c(piece):
        z = piece.find(b"\0")
        return piece if z < 0 else piece[:z]

    def encode(self, text: bytes, bos=True, eos=False):
        tokens = []
        if bos:
            tokens.append(1)
        if len(text) > 0:
            tokens.append(self.index[b" "])
        buf = b""
        for i, c in enumerate(text):
            if c & 0xC0 != 0x80:
                buf = b""
            buf += bytes([c])
            nxt = text[i + 1] if i + 1 < len(text) else 0
            if nxt & 0xC0 == 0x80 and len(buf) < 4:
                continue
            if buf in self.index:
                tokens.append(self.index[buf])
            else:
                tokens.extend(b + 3 for b in buf)
            buf = b""
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(len(tokens) - 1):
                merged = self._c(self.pieces[tokens[i]]) + self._c(self.pieces[tokens[i + 1]])
                j = self.index.get(merged)
                if j is not None and self.scores[j] > best_score:
                    best_score, best_id, best_idx = self.scores[j], j, i
            if best_idx == -1:
                break
            tokens[best_idx:best_idx + 2] = [best_id]
        if eos:
            tokens.append(2)
        return tokens
