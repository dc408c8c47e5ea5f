#!/usr/bin/env python3
"""Oracle for chat prompts: renders a model's own `tokenizer.chat_template` with jinja2 the way
Hugging Face transformers does (sandboxed environment, trim_blocks, lstrip_blocks,
raise_exception), so QuantLM's renderer can be compared with the template itself.

  render (--gguf FILE | --template FILE) CONVERSATIONS.json OUT.json
      CONVERSATIONS.json: a JSON list of conversations, each a list of {"role", "content"}.
      OUT.json: the list of rendered prompts, add_generation_prompt=True and bos_token=""
      (QuantLM's tokenizer adds BOS itself, as tokenizer.ggml.add_bos_token says).
      --gguf reads tokenizer.chat_template with the gguf package; --template reads a Jinja file.
Prints one JSON line with counts.
"""
import json
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def template_text(args):
    if "--gguf" in args:
        from gguf import GGUFReader
        path = args[args.index("--gguf") + 1]
        r = GGUFReader(path)
        if "tokenizer.chat_template" not in r.fields:
            raise SystemExit(f"{path}: no tokenizer.chat_template")
        return r.fields["tokenizer.chat_template"].contents()
    with open(args[args.index("--template") + 1], encoding="utf-8") as f:
        return f.read()


def main():
    args = sys.argv[1:]
    if not args or args[0] != "render":
        raise SystemExit("usage: render (--gguf FILE | --template FILE) CONVERSATIONS.json OUT.json")
    rest = [a for i, a in enumerate(args[1:], 1) if a not in ("--gguf", "--template") and args[i - 1] not in ("--gguf", "--template")]
    conversations_path, out_path = rest[0], rest[1]

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(template_text(args))
    conversations = json.load(open(conversations_path, encoding="utf-8"))
    out = [template.render(messages=c, add_generation_prompt=True, bos_token="", eos_token="") for c in conversations]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(json.dumps({"conversations": len(out)}))


if __name__ == "__main__":
    main()
