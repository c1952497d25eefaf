"""parse_vllm_memory_log on lines in vLLM 0.32's own formats (and the older weights line)."""

from __future__ import annotations

from serving.launcher.plan.vllm_log import parse_vllm_memory_log

# Formats: v1/worker/gpu_model_runner.py, v1/worker/gpu_worker.py, v1/core/kv_cache_utils.py
LOG_0_32 = """\
(EngineCore pid=41) INFO 05-02 10:00:01 [gpu_model_runner.py:5150] Model loading took 13.44 GiB memory and 21.512345 seconds
(EngineCore pid=41) INFO 05-02 10:00:30 [gpu_worker.py:760] Available KV cache memory: 56.01 GiB
(EngineCore pid=41) INFO 05-02 10:00:30 [kv_cache_utils.py:2328] GPU KV cache size: 1,887,749 tokens, Maximum concurrency for 131,072 tokens per request: 14.40x
"""
LOG_0_10 = """\
(EngineCore_0 pid=5839) INFO 08-20 18:04:10 [gpu_model_runner.py:2007] Model loading took 65.9651 GiB and 12.799889 seconds
(EngineCore_0 pid=5839) INFO 08-20 18:04:22 [gpu_worker.py:276] Available KV cache memory: -2.14 GiB
"""


def test_reads_weights_kv_and_concurrency() -> None:
    assert parse_vllm_memory_log(LOG_0_32) == {
        "weights_gib": 13.44,
        "kv_cache_gib": 56.01,
        "kv_cache_tokens": 1887749,
        "max_model_len": 131072,
        "max_concurrency": 14.40,
    }


def test_older_weights_line_and_negative_kv_without_a_capacity_line() -> None:
    assert parse_vllm_memory_log(LOG_0_10) == {"weights_gib": 65.9651, "kv_cache_gib": -2.14}


def test_the_last_start_wins_and_nothing_is_invented() -> None:
    restarted = LOG_0_10 + LOG_0_32
    assert parse_vllm_memory_log(restarted)["kv_cache_gib"] == 56.01
    assert parse_vllm_memory_log("INFO starting\n") == {}
