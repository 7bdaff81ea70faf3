#!/usr/bin/env python3
"""Writes the GGUF block-format fixtures that kernels/cpu/quantize_test.cc checks against.

The blobs and their dequantized values come from the `gguf` package's numpy implementation of
the formats (independent of ours). For the types it can quantize (Q4_0, Q4_1, Q8_0, BF16) the
source floats are stored too, so the test also checks our quantizers byte for byte; for the K
types (which it can only dequantize) the blobs are random valid blocks.

    pip install gguf numpy
    python3 tests/kernels/make_quant_fixtures.py   # rewrites tests/kernels/quant_fixtures/

Index: quant_fixtures/index.csv with columns name,gguf_type_id,num_elements,has_source. Files per
fixture: NAME.blob (quantized bytes), NAME.f32 (dequantized, little-endian float32) and, when
has_source is 1, NAME.src.f32 (the floats that were quantized).
"""

import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant_fixtures")


def source_values(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    x[:32] = 0.0                       # an all-zero block
    x[32:64] = 0.75                    # a constant block
    x[64:96] *= 1000.0                 # large values
    x[96:128] *= 1e-4                  # tiny values
    x[128:160] = np.abs(x[128:160])    # all positive (Q4_1 min > 0)
    return x


def random_k_blocks(rng, qtype, n):
    block_size, type_size = quants.GGML_QUANT_SIZES[qtype]
    nb = n // block_size
    raw = rng.integers(0, 256, size=(nb, type_size), dtype=np.uint8)
    scales = (rng.uniform(1e-3, 2e-2, size=(nb, 2))).astype(np.float16).view(np.uint8)
    if qtype == T.Q4_K:
        raw[:, 0:4] = scales.reshape(nb, 4)       # d, dmin
    elif qtype == T.Q6_K:
        raw[:, type_size - 2:] = scales[:, 0:2]    # d at the end of the block
    return raw.reshape(-1)


def main():
    rng = np.random.default_rng(20240611)
    os.makedirs(OUT, exist_ok=True)
    rows = []

    def write(name, qtype, n, blob, values, source=None):
        blob.tofile(os.path.join(OUT, name + ".blob"))
        values.astype("<f4").tofile(os.path.join(OUT, name + ".f32"))
        if source is not None:
            source.astype("<f4").tofile(os.path.join(OUT, name + ".src.f32"))
        rows.append(f"{name},{int(qtype)},{n},{int(source is not None)}")

    n = 512
    for qtype in (T.Q4_0, T.Q4_1, T.Q8_0, T.BF16):
        x = source_values(rng, n)
        blob = quants.quantize(x.reshape(1, n), qtype).reshape(-1).view(np.uint8)
        values = quants.dequantize(blob, qtype).reshape(-1)
        write(qtype.name.lower(), qtype, n, blob, values, x)

    x = source_values(rng, n)
    blob = x.astype(np.float16).view(np.uint8)
    write("f16", T.F16, n, blob, quants.dequantize(blob, T.F16).reshape(-1))

    n = 1024
    for qtype in (T.Q4_K, T.Q6_K):
        blob = random_k_blocks(rng, qtype, n)
        values = quants.dequantize(blob, qtype).reshape(-1)
        assert np.all(np.isfinite(values))
        write(qtype.name.lower(), qtype, n, blob, values)

    with open(os.path.join(OUT, "index.csv"), "w") as f:
        f.write("name,gguf_type_id,num_elements,has_source\n")
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
