"""sentence-transformers' own ONNX and OpenVINO exports of a model, made once for ``run.py``.

    benchmarks/.envs/st-extras/bin/python benchmarks/prepare_st.py MODEL_DIR OUT_DIR CALIBRATION.txt

Runs in the ``st-extras`` venv (sentence-transformers 5.7 with optimum). Writes ``OUT_DIR`` as a
sentence-transformers model folder holding ``onnx/model.onnx``, ``model_O3.onnx``, ``model_O4.onnx``,
``model_qint8.onnx`` (dynamic int8, the config matching this CPU) and ``openvino/openvino_model.xml``,
``openvino_model_qint8_quantized.xml`` (static int8), exactly as the sentence-transformers docs
("Speeding up Inference") make them. Static int8 calibrates on the texts of ``CALIBRATION.txt``
(one a line) instead of sentence-transformers' default GLUE/SST-2, which would need the hub. A step
that fails is reported and skipped: the runner shows its rows as failed.
"""

from __future__ import annotations

import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _int8_config() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def _step(name: str, action: Callable[[], None]) -> None:
    try:
        action()
        print(f"prepare_st: {name} done", file=sys.stderr, flush=True)
    except Exception:
        print(f"prepare_st: {name} FAILED\n{traceback.format_exc()}", file=sys.stderr, flush=True)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="sentence-transformers' own ONNX and OpenVINO exports of a model.")
    parser.add_argument("model_dir", help="the sentence-transformers model folder")
    parser.add_argument("out", type=Path, help="where the exports go (replaced)")
    parser.add_argument("calibration_file", type=Path, help="static int8 calibration texts, one a line")
    args = parser.parse_args()
    model_dir, out, calibration_file = args.model_dir, args.out, args.calibration_file
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
        export_static_quantized_openvino_model,
    )

    calibration = [t for t in calibration_file.read_text().splitlines() if t.strip()]
    if out.exists():
        shutil.rmtree(out)
    onnx_model = SentenceTransformer(model_dir, backend="onnx", device="cpu")
    onnx_model.save(str(out))
    for level in ("O3", "O4"):
        _step(f"onnx {level}", lambda level=level: export_optimized_onnx_model(onnx_model, level, str(out)))
    config = _int8_config()

    def dynamic_int8() -> None:
        export_dynamic_quantized_onnx_model(onnx_model, config, str(out))
        (out / "onnx" / f"model_qint8_{config}.onnx").rename(out / "onnx" / "model_qint8.onnx")

    _step(f"onnx dynamic qint8 ({config})", dynamic_int8)
    ov_model = SentenceTransformer(model_dir, backend="openvino", device="cpu")
    _step("openvino", lambda: ov_model.save(str(out)))

    def static_int8() -> None:
        from datasets import Dataset
        from optimum.intel.openvino import OVQuantizer

        def local_dataset(self: Any, dataset_name: str, num_samples: int = 300, **kwargs: Any) -> Any:
            data = Dataset.from_dict({"sentence": calibration[:num_samples]})
            return data.map(kwargs["preprocess_function"], batched=True, remove_columns=["sentence"])

        OVQuantizer.get_calibration_dataset = local_dataset
        export_static_quantized_openvino_model(ov_model, None, str(out))

    _step("openvino static qint8", static_int8)
    (out / ".done").write_text("ok\n")


if __name__ == "__main__":
    main()
