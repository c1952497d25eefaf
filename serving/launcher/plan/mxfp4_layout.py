"""What the MXFP4 experts weigh on the GPU: vLLM's per-backend padding rule, per GPU.

vLLM 0.32 pads the expert matrices before repacking them for the MoE kernel
(``model_executor/layers/fused_moe/oracle/mxfp4.py``,
``mxfp4_round_up_hidden_size_and_intermediate_size``):

- Marlin (our pin on Ampere/Ada, ``--moe-backend marlin``) and FlashInfer TRT-LLM
  (Blackwell's default): intermediate to a multiple of 128, hidden to a multiple of 256.
  gpt-oss: 2880 x 2880 becomes 3072 x 2944 per expert matrix, +9.0%.
- OAI triton_kernels (Hopper's default, ``Mxfp4MoeBackend.TRITON``): intermediate to a
  multiple of 64 (2880 stays 2880); the Hopper swizzled value/scale layout then adds
  ``TRITON_HOPPER_LAYOUT`` on the expert bytes, fitted to the published Hopper loads
  (gpt-oss-20b 13.47 GiB, gpt-oss-120b 64.38 GiB; tests/launcher/data/).
- ``checkpoint``: the unpadded size (vLLM 0.10.1's first gpt-oss build on sm_86 loaded
  12.88 GiB for gpt-oss-20b, the checkpoint's size).

Without expert parallelism the experts are split tensor-parallel across every GPU of the
engine group, data-parallel ranks included (``FusedMoEParallelConfig.make``: "flatten TP
across DP"); the split is on the intermediate dimension, before padding.
"""

from __future__ import annotations

import math
from typing import Literal

from serving.launcher.plan.model_spec import ModelSpec

MoeLayout = Literal["marlin", "triton", "trtllm", "checkpoint"]

GENERATION_LAYOUT: dict[str, MoeLayout] = {
    "ampere": "marlin",
    "ada": "marlin",
    "hopper": "triton",
    "blackwell": "trtllm",
}
# Fitted: (13.47 - 3.36) / 9.46 = 1.069 (20b), (64.38 - 4.04) / 56.73 = 1.064 (120b).
TRITON_HOPPER_LAYOUT = 1.066


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def padded_dims(layout: MoeLayout, hidden: int, intermediate: int) -> tuple[int, int]:
    """(hidden, intermediate per partition) after vLLM 0.32's rounding for ``layout``."""
    if layout in ("marlin", "trtllm"):
        return _round_up(hidden, 256), _round_up(intermediate, 128)
    if layout == "triton":
        return hidden, _round_up(intermediate, 64)
    return hidden, intermediate


def expert_bytes_per_gpu(spec: ModelSpec, layout: MoeLayout, moe_parallel: int) -> int:
    """Expert weight bytes on one GPU when the experts are split over ``moe_parallel``."""
    if spec.quantization != "mxfp4":
        return math.ceil(spec.expert_bytes() / moe_parallel)
    part = spec.intermediate_size // moe_parallel
    hidden, inter = padded_dims(layout, spec.hidden_size, part)
    ratio = hidden * inter / (spec.hidden_size * part)
    if layout == "triton":
        ratio *= TRITON_HOPPER_LAYOUT
    return math.ceil(spec.expert_bytes() / moe_parallel * ratio)


def layout_for(generation: str) -> MoeLayout:
    return GENERATION_LAYOUT.get(generation, "marlin")
