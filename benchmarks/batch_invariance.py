r"""Does a text's embedding depend on its batch? And how far are two machines' embeddings apart?

    .venv/bin/python benchmarks/batch_invariance.py [--artifact A] [--rows openvino/openvino-int8,cpu/int8]
    .venv/bin/python benchmarks/batch_invariance.py --save /tmp/native
    .venv/bin/python benchmarks/avx2_proxy.py run -- \
        .venv/bin/python benchmarks/batch_invariance.py --compare /tmp/native

For each row (provider/variant) of an artifact: the distinct STSb test sentences (2,552) encoded in batches of 32
and each alone; how many come out bit-identical, the largest 1 - cosine between the two, and how many texts move
by more than 1e-4 / 1e-5 / 1e-6; then the batched embeddings against ``cpu/fp32`` of the same artifact (min and
mean cosine). ``--save DIR`` keeps each row's batched embeddings; ``--compare DIR`` reports how far this run's are
from those (another CPU, or ONNX Runtime and OpenVINO on their AVX2 kernels under ``benchmarks/avx2_proxy.py``).
Run ``benchmarks/run.py`` once first, or pass ``--artifact``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE / ".envs" / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, default=MODELS / "artifact")
    parser.add_argument("--rows", default="cpu/int8,cpu/int8-avx2,openvino/openvino-int8,openvino/openvino")
    parser.add_argument("--save", type=Path, default=None, help="write each row's batched embeddings here")
    parser.add_argument("--compare", type=Path, default=None, help="compare with the embeddings saved here")
    parser.add_argument("--stsb", default=None, help="folder of stsb-<lang>-<split>.csv files")
    args = parser.parse_args()

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.machine import this_cpu
    from fastembed_rt.stsb import load_stsb
    from fastembed_rt.util import pairwise_cos_sim as cosines

    data = load_stsb("test", "en", args.stsb)
    texts = list(dict.fromkeys(data.sentences1 + data.sentences2))
    reference = SentenceTransformer(args.artifact, provider="cpu", variant="fp32").encode(texts, batch_size=32)
    print(f"{this_cpu().describe()}, {len(texts):,} distinct STSb test sentences, {time.strftime('%Y-%m-%d %H:%M')}")
    compared = " | vs saved: max 1 - cos | vs saved: > 1e-4" if args.compare else ""
    print(
        "\n| row | bit-identical alone and batched | max 1 - cos | > 1e-4 | > 1e-5 | > 1e-6 "
        f"| vs cpu/fp32 min / mean{compared} |"
    )
    print(f"| --- | ---: | ---: | ---: | ---: | ---: | ---: |{' ---: | ---: |' if args.compare else ''}")
    for row in args.rows.split(","):
        provider, variant = row.split("/")
        model = SentenceTransformer(args.artifact, provider=provider, variant=variant)
        batched = np.asarray(model.encode(texts, batch_size=32))
        alone = np.stack([np.asarray(model.encode(text)) for text in texts])
        model.close()
        moved = 1 - cosines(alone, batched)
        to_fp32 = cosines(batched, reference)
        cells = [
            f"{int((alone == batched).all(axis=1).sum()):,}",
            f"{moved.max():.1e}",
            *(f"{int((moved > bound).sum())}" for bound in (1e-4, 1e-5, 1e-6)),
            f"{to_fp32.min():.5f} / {to_fp32.mean():.5f}",
        ]
        file = f"{provider}_{variant}.npy"
        if args.compare:
            apart = 1 - cosines(batched, np.load(args.compare / file))
            cells += [f"{apart.max():.1e}", f"{int((apart > 1e-4).sum())}"]
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            np.save(args.save / file, batched)
        print(f"| {row} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
