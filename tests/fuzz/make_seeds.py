#!/usr/bin/env python3
"""Writes the small seed files of tests/fuzz/corpus/ (not run by the build; kept to show and redo
how the seeds were made). Usage: make_seeds.py SHARED_DIR TINY_MODEL_DIR TINY_MOEW
  SHARED_DIR      ../shared (goldens/ and tokenizers/)
  TINY_MODEL_DIR  a `moec synth --preset tiny` folder (its tokenizer.json)
  TINY_MOEW       a .moew that `moec compile --weights sidecar` wrote for it (its tokenizer blob)
The first byte of a safetensors, tokenizer or prompt seed picks the target's mode (see its .c)."""
import json, os, struct, sys

shared, tiny, moew = sys.argv[1:4]
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(kind, name, data):
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    with open(os.path.join(root, kind, name), "wb") as f:
        f.write(data)

def safetensors(tensors):  # [(name, dtype, shape, bytes)]
    hdr, data = {"__metadata__": {"format": "pt"}}, b""
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

put("safetensors", "two_tensors", b"\0" + safetensors([("model.a", "BF16", [2, 3], bytes(range(12))),
                                                        ("model.b", "F32", [4], struct.pack("<4f", 1, 2, 3, 4))]))
put("safetensors", "f16_empty_dim", b"\0" + safetensors([("x", "F16", [0, 5], b""), ("y", "F16", [3], b"\1\2\3\4\5\6")]))
put("safetensors", "index", b"\1" + json.dumps({"metadata": {"total_size": 28}, "weight_map": {
    "model.a": "model-00001-of-00002.safetensors", "model.b": "model-00002-of-00002.safetensors"}}).encode())
with open(os.path.join(shared, "goldens/mixtral_tiny_f32_2shards/model/model.safetensors.index.json"), "rb") as f:
    put("safetensors", "golden_index", b"\1" + f.read())
with open(os.path.join(shared, "goldens/mixtral_tiny_bf16/model/model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.seek(0)
    put("safetensors", "golden_header_only", b"\0" + f.read(8 + n))  # the data cut off: an error seed

# tokenizer.json: the synthetic one, and the real ones cut to a few hundred ids (structure kept)
with open(os.path.join(tiny, "tokenizer.json"), "rb") as f:
    put("tokenizer", "synth_json", b"\0" + f.read())
for name in ("llama2", "qwen3"):
    with open(os.path.join(shared, "tokenizers", name, "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    keep = {t: i for t, i in vocab.items() if i < 400}
    tj["model"]["vocab"] = keep
    merges = []
    for m in tj["model"].get("merges", []):
        a, b = m.split(" ") if isinstance(m, str) else m
        if a in keep and b in keep and a + b in keep:
            merges.append(m)
    tj["model"]["merges"] = merges
    tj["added_tokens"] = [t for t in tj.get("added_tokens", []) if t["id"] < 400]
    put("tokenizer", name + "_json", b"\0" + json.dumps(tj, ensure_ascii=False).encode())
with open(moew, "rb") as f:
    head = f.read(4096)
    kind, _, off, size = struct.unpack_from("<IIQQ", head, 56)
    assert kind == 2, "the second section is not the tokenizer"
    f.seek(off)
    put("tokenizer", "synth_blob", b"\1" + f.read(size))

# weights: a small .moew with both sections at 4096 multiples and the right hash, and the same
# appended to an "executable" with a trailer
M = (1 << 64) - 1
def moe_hash(seed, data):
    h = seed
    i = 0
    while i + 8 <= len(data):
        h = ((h ^ struct.unpack_from("<Q", data, i)[0]) * 0x100000001b3) & M
        h ^= h >> 29
        i += 8
    for b in data[i:]:
        h = ((h ^ b) * 0x100000001b3) & M
    return h
seed = moe_hash(0xcbf29ce484222325, b"mixtral")
weights, tok = bytes((i * 7) & 255 for i in range(3000)), b"tokenizer bytes"
h = moe_hash(seed, weights + tok)
hdr = b"MOEWGT01" + struct.pack("<IIQQ", 4, 2, h, 3 * 4096)
hdr += struct.pack("<IIQQ", 1, 0, 4096, len(weights)) + struct.pack("<IIQQ", 2, 0, 8192, len(tok))
hdr += bytes(2 * 24) + b"mixtral".ljust(32, b"\0")
moew_bytes = hdr.ljust(4096, b"\0") + weights.ljust(4096, b"\0") + tok.ljust(4096, b"\0")
put("weights", "small_moew", moew_bytes)
put("weights", "small_exe", b"\x7fELF".ljust(4096, b"\0") + moew_bytes + b"MOEEMBED" + struct.pack("<Q", 4096))

put("prompt", "ids", b"\0" + b"1,2,3,384,0,2147483647")
put("prompt", "ids_bad", b"\0" + b"1,,2,-3,99999999999")
for i, line in enumerate(open(os.path.join(shared, "tokenizers/llama2/cases.jsonl")).readlines()[:6]):
    put("prompt", "text%d" % i, b"\1" + json.loads(line)["text"].encode())

# gguf: each GGUF golden's metadata (every key, as llama.cpp wrote it) with a few small F32
# tensors under its names, so that seeds reach the model reader (frontend/gguf_model.c)
def gguf_kvs(path):
    b = open(path, "rb").read()
    assert b[:4] == b"GGUF"
    n_t, n_kv = struct.unpack_from("<QQ", b, 8)
    at, out = 24, []
    def rstr(at):
        n = struct.unpack_from("<Q", b, at)[0]
        return b[at + 8:at + 8 + n], at + 8 + n
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def rval(t, at):
        if t == 8:
            s, e = rstr(at)
            return b[at:e], e
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, at)
            e = at + 12
            for _ in range(n):
                _, e = rval(et, e)
            return b[at:e], e
        return b[at:at + size[t]], at + size[t]
    for _ in range(n_kv):
        key, at = rstr(at)
        t = struct.unpack_from("<I", b, at)[0]
        raw, at = rval(t, at + 4)
        out.append((key, t, raw))
    return out

def gguf_write(kvs, tensors):  # tensors: [(name, ne list, float32 bytes)]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, t, raw in kvs:
        out += struct.pack("<Q", len(key)) + key + struct.pack("<I", t) + raw
    off, infos, data = 0, b"", b""
    for name, ne, raw in tensors:
        infos += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(ne))
        infos += b"".join(struct.pack("<q", x) for x in ne) + struct.pack("<IQ", 0, off)
        data += raw + bytes(-len(raw) % 32)
        off = len(data)
    out += infos
    return out + bytes(-len(out) % 32) + data

def f32(*ne):
    n = 1
    for x in ne:
        n *= x
    return bytes(4 * n)

for case in ("gguf_mixtral_q8_0", "gguf_qwen2_moe_q4_0", "gguf_qwen3_moe_q8_0", "gguf_olmoe_bf16",
             "gguf_mixtral_per_expert_q4_0"):
    d = os.path.join(shared, "goldens/gguf", case, "model")
    kvs = [kv for kv in gguf_kvs(os.path.join(d, sorted(os.listdir(d))[0]))
           if not kv[0].startswith(b"tokenizer.ggml.") or kv[0].endswith(b"_id")]  # drop the big vocab arrays
    ts = [("token_embd.weight", [64, 8], f32(64, 8)), ("output_norm.weight", [64], f32(64)),
          ("blk.0.attn_q.weight", [64, 64], f32(64, 64)), ("blk.0.attn_k.weight", [64, 32], f32(64, 32)),
          ("blk.0.ffn_gate_inp.weight", [64, 4], f32(64, 4)), ("blk.1.ffn_up_exps.weight", [64, 2, 4], f32(64, 2, 4)),
          ("blk.1.ffn_gate.3.weight", [64, 2], f32(64, 2)), ("blk.0.ffn_up_shexp.weight", [64, 2], f32(64, 2)),
          ("blk.0.ffn_gate_inp_shexp.weight", [64], f32(64))]
    put("gguf", "model_" + case, gguf_write(kvs, ts))

# gguf: the two tokenizer GGUFs with their vocabularies cut to a few hundred ids (merges kept when
# both halves and the result survive), so seeds reach the GGUF tokenizer (frontend/gguf_tok.c)
def arr_items(raw):
    et, n = struct.unpack_from("<IQ", raw, 0)
    at, items = 12, []
    for _ in range(n):
        if et == 8:
            ln = struct.unpack_from("<Q", raw, at)[0]
            items.append(raw[at + 8:at + 8 + ln])
            at += 8 + ln
        else:
            w = {4: 4, 5: 4, 6: 4}[et]
            items.append(raw[at:at + w])
            at += w
    return et, items

def arr_raw(et, items):
    out = struct.pack("<IQ", et, len(items))
    for it in items:
        out += struct.pack("<Q", len(it)) + it if et == 8 else it
    return out

for name, keep in (("llama2", 300), ("qwen3", 400)):
    kvs = gguf_kvs(os.path.join(shared, "goldens/gguf/tokenizers", name + ".gguf"))
    vocab = None
    for key, t, raw in kvs:
        if key == b"tokenizer.ggml.tokens":
            vocab = set(arr_items(raw)[1][:keep])
    out = []
    for key, t, raw in kvs:
        if t == 9 and key.startswith(b"tokenizer.ggml.") and key != b"tokenizer.ggml.merges":
            et, items = arr_items(raw)
            raw = arr_raw(et, items[:keep])
        elif key == b"tokenizer.ggml.merges":
            et, items = arr_items(raw)
            raw = arr_raw(et, [m for m in items if all(p in vocab for p in m.split(b" ")) and m.replace(b" ", b"") in vocab])
        elif key == b"tokenizer.chat_template" or key.endswith(b"_token_id") and struct.unpack_from("<I", raw)[0] >= keep:
            continue
        out.append((key, t, raw))
    put("gguf", "tokenizer_" + name, gguf_write(out, []))

# server: byte 0 sets up the server, byte 1 the fake engine (see fuzz_server.c), then what one
# connection sends: requests to every endpoint, pipelined, streaming, and bad ones
def http(method, path, body=b"", headers=()):
    head = "%s %s HTTP/1.1\r\nHost: a\r\n" % (method, path)
    for h in headers:
        head += h + "\r\n"
    if body:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return head.encode() + b"\r\n" + body

def jbody(obj):
    return json.dumps(obj).encode()

chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
put("server", "completion", b"\x00\x00" + http("POST", "/v1/completions", jbody(
    {"model": "tiny", "prompt": "Once upon a", "max_tokens": 4, "temperature": 0, "stop": ["\n", "up"]})))
put("server", "completion_ids", b"\x00\x05" + http("POST", "/v1/completions", jbody(
    {"prompt": [1, 72, 105, 383], "max_tokens": 3, "top_p": 0.5, "top_k": 5, "seed": -3, "n": 1})))
put("server", "completion_stream", b"\x00\x21" + http("POST", "/v1/completions", jbody(
    {"prompt": ["Hi"], "stream": True, "stream_options": {"include_usage": True}, "stop": "lo"})))
put("server", "chat_mixtral", b"\x01\x00" + http("POST", "/v1/chat/completions", jbody(
    {"model": "tiny", "messages": chat, "max_completion_tokens": 8, "stop": ["wor"]})))
put("server", "chat_qwen3_stream", b"\x02\xa3" + http("POST", "/v1/chat/completions", jbody(
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                  {"role": "assistant", "content": None}, {"role": "user", "content": "c"}],
     "stream": True, "stream_options": {"include_usage": True}, "stop": ["x", "Hello"]})))
put("server", "chat_alternation", b"\x01\x02" + http("POST", "/v1/chat/completions", jbody(
    {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})))
put("server", "chat_broken_template", b"\x03\x00" + http("POST", "/v1/chat/completions", jbody({"messages": chat})))
put("server", "chat_no_template", b"\x00\x00" + http("POST", "/v1/chat/completions", jbody({"messages": chat})))
put("server", "pipelined_gets", b"\x0c\x00" + http("GET", "/v1/models", headers=["Authorization: Bearer k"]) +
    http("GET", "/health") + http("GET", "/metrics", headers=["Authorization: Bearer k"]) +
    http("GET", "/nowhere?x=1") + http("POST", "/health") + http("GET", "/v1/models") +
    http("GET", "/v1/completions", headers=["Connection: close"]))
put("server", "bad_fields", b"\x00\x00" + b"".join(http("POST", "/v1/completions", jbody(o)) for o in [
    {"prompt": "a", "max_tokens": 0}, {"prompt": "a", "temperature": -1}, {"prompt": "a", "top_p": 0},
    {"prompt": "a", "top_k": -2}, {"prompt": "a", "seed": 1.5}, {"prompt": "a", "n": 2},
    {"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, {"prompt": "a", "stop": [1]}, {"prompt": "a", "stream": 1},
    {"prompt": [1, 999]}, {"prompt": ""}, {"prompt": 5}, [], {"messages": []}]) +
    http("POST", "/v1/completions", b"{\"prompt\":") + http("POST", "/v1/chat/completions", jbody({"messages": [1]})))
put("server", "long_prompt_small_context", b"\x80\x01" + http("POST", "/v1/completions", jbody(
    {"prompt": "a b c d e f g h i j k l m n o p"})) + http("POST", "/v1/completions", jbody({"prompt": "ab"})))
put("server", "queue_full", b"\x20\x00" + http("POST", "/v1/completions", jbody({"prompt": "a"})) +
    http("GET", "/health"))
put("server", "draining", b"\x10\x00" + http("GET", "/health") + http("POST", "/v1/completions", jbody({"prompt": "a"})))
put("server", "limits", b"\x40\x00" + http("POST", "/v1/completions", jbody({"prompt": "x" * 200})))
put("server", "expect_continue", b"\x00\x00" + b"POST /v1/completions HTTP/1.1\r\nContent-Length: 40\r\n"
    b"Expect: 100-continue\r\n\r\n{\"prompt\":\"x\"")
put("server", "bad_heads", b"\x00\x00" + b"GET /health HTTP/2.0\r\n\r\n")
put("server", "chunked", b"\x00\x00" + b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
