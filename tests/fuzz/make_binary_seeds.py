#!/usr/bin/env python3
"""Writes the binary seed inputs of the safetensors, gguf and kv_persist fuzz targets into
tests/fuzz/corpus/<target>/ (the text seeds are written by hand). Run from anywhere; the files are
committed, so this only needs rerunning when a format changes."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors: u64 header length, JSON header, data section ---------------------------------
def safetensors(tensors, metadata=None, pad=True):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


f32 = struct.pack("<4f", 1.0, -2.5, 0.0, 3.25)
write("safetensors", "f32_f16_bf16", safetensors([
    ("a.weight", "F32", [2, 2], f32),
    ("b.weight", "F16", [3], struct.pack("<3e", 1.0, -0.5, 65504.0)),
    ("c.weight", "BF16", [2], bytes([0x80, 0x3F, 0x00, 0xC0])),
], {"format": "pt"}))
write("safetensors", "fp8_with_scale", safetensors([
    ("w", "F8_E4M3", [2, 2], bytes([0x38, 0xB8, 0x7F, 0x01])),
    ("w_scale_inv", "F32", [1, 1], struct.pack("<f", 0.5)),
]))
write("safetensors", "ints_bool_scalar", safetensors([
    ("i", "I64", [1], struct.pack("<q", -3)),
    ("b", "BOOL", [], b"\x01"),
    ("u", "U8", [0], b""),
]))
write("safetensors", "empty_header", safetensors([], pad=False))

# ---- GGUF v3 ------------------------------------------------------------------------------------
GGUF_TYPES = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7,
              "str": 8, "arr": 9, "u64": 10, "i64": 11, "f64": 12}
PACK = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f",
        "bool": "<?", "u64": "<Q", "i64": "<q", "f64": "<d"}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gvalue(kind, v):
    if kind == "str":
        return gstr(v)
    if kind.startswith("arr:"):
        elem = kind[4:]
        out = struct.pack("<I", GGUF_TYPES["arr" if elem.startswith("arr:") else elem]) + struct.pack("<Q", len(v))
        return out + b"".join(gvalue(elem, x) for x in v)
    return struct.pack(PACK[kind], v)


def gguf(kvs, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, kind, v in kvs:
        out += gstr(key) + struct.pack("<I", GGUF_TYPES["arr" if kind.startswith("arr:") else kind]) + gvalue(kind, v)
    data, offsets = b"", []
    for name, ggml_type, ne, raw in tensors:
        data += b"\0" * (-len(data) % alignment)
        offsets.append(len(data))
        data += raw
    for (name, ggml_type, ne, raw), off in zip(tensors, offsets):
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", ggml_type, off)
    out += b"\0" * (-len(out) % alignment)
    return out + data


write("gguf", "every_value_type", gguf([
    ("general.architecture", "str", "llama"),
    ("u8", "u8", 7), ("i8", "i8", -7), ("u16", "u16", 700), ("i16", "i16", -700),
    ("u32", "u32", 70000), ("i32", "i32", -70000), ("f32", "f32", 1e-5), ("flag", "bool", True),
    ("u64", "u64", 1 << 40), ("i64", "i64", -(1 << 40)), ("f64", "f64", 0.1),
    ("tokens", "arr:str", ["a", "b", "\u2581c"]), ("scores", "arr:f32", [0.0, -1.5]),
    ("nested", "arr:arr:i32", [[1, 2], [3]]),
], [
    ("tok_embd.weight", 0, [4, 2], struct.pack("<8f", *range(8))),   # F32
    ("norm.weight", 1, [4], struct.pack("<4e", 1, 2, 3, 4)),          # F16
]))
write("gguf", "alignment_64", gguf([("general.alignment", "u32", 64)], [("x", 0, [2], struct.pack("<2f", 1, 2))], 64))
write("gguf", "metadata_only", gguf([("general.architecture", "str", "qwen2")], []))

# ---- kv_persist: see src/kv/kv_persist.h ---------------------------------------------------------
class Checksum:
    def __init__(self):
        self.h = 1469598103934665603

    def mix(self, w):
        self.h = ((self.h ^ w) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        self.h ^= self.h >> 32

    def add(self, data):
        while len(data) >= 8:
            self.mix(struct.unpack("<Q", data[:8])[0])
            data = data[8:]
        if data:
            self.mix(struct.unpack("<Q", data.ljust(8, b"\0"))[0] ^ (len(data) << 56))


def kv_file(entries, fingerprint=0x1234ABCD, arch=b"llama", block=4, n_layer=2, kw=2, vw=3):
    out, s = b"", Checksum()

    def field(b):
        nonlocal out
        out += b
        s.add(b)

    def check():
        nonlocal out, s
        out += struct.pack("<Q", s.h)
        s = Checksum()

    for b in (b"FATHOMKV", struct.pack("<I", 1), struct.pack("<Q", fingerprint), struct.pack("<I", 0),
              struct.pack("<I", block), struct.pack("<q", n_layer), struct.pack("<q", kw), struct.pack("<q", vw),
              struct.pack("<I", len(arch)), arch, struct.pack("<Q", len(entries))):
        field(b)
    check()
    for tokens in entries:
        field(struct.pack("<I", len(tokens)))
        field(struct.pack("<%di" % len(tokens), *tokens))
        for layer in range(n_layer):
            field(struct.pack("<%df" % (block * kw), *[layer + 0.5 * i for i in range(block * kw)]))
            field(struct.pack("<%df" % (block * vw), *[-layer - 0.25 * i for i in range(block * vw)]))
        check()
    return out + b"FKVEND\0\0" + struct.pack("<Q", len(entries))


write("kv_persist", "two_prefixes", kv_file([list(range(100, 104)), list(range(100, 108)), list(range(500, 504))]))
write("kv_persist", "orphan_block", kv_file([list(range(7, 15))]))
write("kv_persist", "empty", kv_file([]))
write("kv_persist", "other_model", kv_file([list(range(4))], fingerprint=1, arch=b"qwen2"))
