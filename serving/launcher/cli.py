"""`python -m serving plan` and `python -m serving doctor` (registered by serving/cli.py)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from serving.catalogue import model_families
from serving.config import EngineSettings
from serving.launcher.doctor import run_doctor
from serving.launcher.hardware import GPU_PRESETS, Hardware, detect_hardware, preset_hardware
from serving.launcher.plan import EnginePlan, PlanRefused, build_plan
from serving.launcher.plan.model_spec import GiB


def register_cli(subparsers: Any) -> None:
    """Add `plan` and `doctor` to the `python -m serving` sub-commands."""
    plan = subparsers.add_parser(
        "plan", help="show the vLLM plan (memory table, flags, command) for this or a given GPU"
    )
    plan.add_argument("--gpu", choices=sorted(GPU_PRESETS), help="plan for a preset card")
    plan.add_argument("--gpus", type=int, help="number of cards (default: 1 preset / all found)")
    plan.add_argument("--model", choices=model_families(), help="default: SERVING_MODEL_FAMILY")
    plan.add_argument("--max-model-len", type=int, help="context length (default: 131072)")
    plan.add_argument("--engine", choices=["auto", "cpu", "cuda"])
    plan.add_argument("--synthetic-weights", action="store_true", help="vLLM --load-format dummy")
    plan.add_argument("--smoke-model-dir", type=Path, help="smoke checkpoint (CPU profile)")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(func=cmd_plan)

    doctor = subparsers.add_parser(
        "doctor", help="print the detected hardware and whether the plan fits, with advice"
    )
    doctor.add_argument("--model", choices=model_families())
    doctor.add_argument("--max-model-len", type=int)
    doctor.set_defaults(func=cmd_doctor)


def _engine(args: argparse.Namespace) -> EngineSettings:
    update: dict[str, object] = {}
    if getattr(args, "model", None):
        update["model_family"] = args.model
    if getattr(args, "max_model_len", None):
        update["max_model_len"] = args.max_model_len
    if getattr(args, "engine", None):
        update["engine"] = args.engine
    if getattr(args, "synthetic_weights", False):
        update["synthetic_weights"] = True
    engine = EngineSettings()
    return EngineSettings.model_validate({**engine.model_dump(), **update})


def _hardware(args: argparse.Namespace) -> Hardware:
    if args.gpu:
        return preset_hardware(args.gpu, args.gpus or 1)
    hardware = detect_hardware()
    if args.gpus:
        hardware = Hardware(
            gpus=hardware.gpus[: args.gpus],
            driver_version=hardware.driver_version,
            cuda_version=hardware.cuda_version,
            cpu_count=hardware.cpu_count,
            memory_bytes=hardware.memory_bytes,
            nvml_error=hardware.nvml_error,
        )
    return hardware


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        plan = build_plan(_hardware(args), _engine(args), smoke_model_dir=args.smoke_model_dir)
    except PlanRefused as refused:
        if args.json:
            body = {
                "refused": refused.message,
                "largest_context": refused.largest_context,
                "cards_for_full_context": refused.cards_for_full_context,
            }
            print(json.dumps(body, indent=2))
        else:
            print(f"REFUSED: {refused.message}")
        return 2
    print(json.dumps(plan.to_json(), indent=2) if args.json else render_plan(plan))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    report, ok = run_doctor(detect_hardware(), _engine(args))
    print(report)
    return 0 if ok else 1


def _gib(value: int) -> str:
    return f"{value / GiB:8.2f} GiB"


def render_plan(plan: EnginePlan) -> str:
    """The human table: where the memory goes, what fits, and the exact command."""
    lines: list[str] = []
    if plan.gpu is not None:
        gpu = plan.gpu
        lines.append(
            f"{plan.gpu_count} x {gpu.name} ({gpu.total_bytes / GiB:.2f} GiB, {gpu.sm}, "
            f"{gpu.generation}); {plan.model_family}, {plan.quantization}; "
            f"tensor parallel {plan.tensor_parallel_size}, data parallel {plan.data_parallel_size}"
        )
        lines.append("")
        lines.append(f"Memory per GPU ({plan.gpu_memory_utilization:.3g} of the card for vLLM):")
    else:
        lines.append(f"CPU profile: {plan.model_family} ({plan.quantization}), {plan.model}")
        lines.append("")
        lines.append("Memory (host):")
    for row in plan.memory:
        lines.append(f"  {row.item:<22}{_gib(row.bytes)}   {row.note}")
    lines.append(f"  {'= budget':<22}{_gib(plan.memory_budget_bytes)}")
    if plan.gpu is not None:
        outside = plan.gpu.total_bytes - plan.memory_budget_bytes
        lines.append(
            f"  {'outside vLLM':<22}{_gib(outside)}   embedding engine, driver, other processes"
        )
    lines.append("")
    c = plan.concurrency
    dp = f" per engine (x{c.data_parallel} engines)" if c.data_parallel > 1 else ""
    lines.append(f"KV cache: {plan.kv_bytes_per_token:,} bytes/token (full-attention layers)")
    lines.append(
        f"  context {plan.max_model_len:,} tokens: {c.kv_cache_tokens:,} tokens of KV cache, "
        f"{c.at_max_model_len:.2f} sequences at full length{dp}"
    )
    if c.full_context_sequences is not None:
        lines.append(f"  131072-token sequences at once: {c.full_context_sequences:g}{dp}")
    lines.append(
        f"  4096-token sequences at once: {c.short_sequences:g} while prefilling (vLLM's "
        f"admission bound), {c.short_sequences_decoding:g} once decoding{dp}"
    )
    lines.append(
        f"  --max-num-seqs {plan.max_num_seqs}, "
        f"--max-num-batched-tokens {plan.max_num_batched_tokens}"
    )
    lines.extend(_topology_lines(plan))
    lines.append(
        f"Sidecar workers: {plan.sidecar_workers} (SERVING_WORKERS; expected engine output "
        f"~{plan.expected_output_tokens_per_s:,.0f} tok/s)"
    )
    lines.append("")
    lines.extend(f"note: {note}" for note in plan.notes)
    lines.append("")
    lines.append("Environment:" if plan.env else "Environment: (none added)")
    lines.extend(f"  {key}={value}" for key, value in plan.env.items())
    lines.append("")
    lines.append("Command:")
    env = " ".join(f"{key}={shlex.quote(value)}" for key, value in plan.env.items())
    lines.append(f"  {env + ' ' if env else ''}{shlex.join(plan.argv)}")
    return "\n".join(lines)


def _topology_lines(plan: EnginePlan) -> list[str]:
    if len(plan.topology) < 2:
        return []
    lines = ["", "Topology (most whole full-length sequences first, then output tok/s):"]
    for o in plan.topology:
        mark = "*" if o.chosen else " "
        what = (
            f"{o.full_length_sequences:3d} x {plan.max_model_len:,}-token sequences, "
            f"KV {o.kv_cache_bytes / GiB:6.2f} GiB/GPU, "
            f"~{o.expected_output_tokens_per_s:,.0f} tok/s"
            if o.fits else f"does not fit (KV {o.kv_cache_bytes / GiB:.2f} GiB/GPU)"
        )
        lines.append(f" {mark} {o.label:<12}{what}")
    return lines
