#!/usr/bin/env python3
"""Rewrites a GGUF version 1 file as version 3 (same metadata, tensors and data), so tools that
dropped v1 support (current llama.cpp) can read it. Used to get peer reference logits for the
shared stories260K model:  scripts/gguf-v1-to-v3.py IN.gguf OUT.gguf"""
import struct
import sys


def main(src_path, dst_path):
    data = open(src_path, 'rb').read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from('<' + fmt, data, pos)
        pos += struct.calcsize('<' + fmt)
        return v[0]

    assert data[:4] == b'GGUF', 'not a GGUF file'
    pos = 4
    version = take('I')
    count = (lambda: take('I')) if version == 1 else (lambda: take('Q'))
    n_tensors, n_kv = count(), count()
    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    out = bytearray(b'GGUF' + struct.pack('<IQQ', 3, n_tensors, n_kv))

    def copy_string():
        n = count()
        nonlocal pos
        s = data[pos:pos + n]
        pos += n
        out.extend(struct.pack('<Q', n) + s)
        return s

    def copy_value(t):
        if t == 8:
            copy_string()
        elif t == 9:
            et, n = take('I'), count()
            out.extend(struct.pack('<IQ', et, n))
            for _ in range(n):
                copy_value(et)
        else:
            out.extend(struct.pack('<' + scalar[t], take(scalar[t])))

    alignment = 32
    for _ in range(n_kv):
        key = copy_string()
        t = take('I')
        out.extend(struct.pack('<I', t))
        copy_value(t)
    infos = []
    for _ in range(n_tensors):
        copy_string()
        nd = take('I')
        dims = [count() for _ in range(nd)]
        t, off = take('I'), take('Q')
        out.extend(struct.pack('<I', nd) + b''.join(struct.pack('<Q', d) for d in dims) + struct.pack('<IQ', t, off))
        infos.append(off)
    src_data = (pos + alignment - 1) // alignment * alignment
    out.extend(b'\0' * ((-len(out)) % alignment))
    out.extend(data[src_data:])
    open(dst_path, 'wb').write(out)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
