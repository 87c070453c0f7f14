"""Test-only launcher: run `python -m tiller ...` with accelerate in FSDP2 or DeepSpeed ZeRO-3
on CPU processes joined over gloo, so the sharded code paths run in CI without a GPU.

    torchrun --nproc_per_node 2 tests/helpers/sharded_launch.py fsdp2|zero3 STAGE --config FILE ... \
        [--then [--stop-after N] STAGE --config FILE ...]

Several `--then`-separated commands run one after the other in the same processes (one start-up
for several runs); `--stop-after N` ends that command's training loop after N steps without
finishing, as the recipes' `stop_after` does for a killed run in the single-process tests.

Why a shim: accelerate (1.15, 1.16) enters FSDP or DeepSpeed only on an accelerator.
`accelerate launch --config_file configs/accelerate/fsdp2.yaml --cpu` (or `use_cpu: true`)
starts independent, non-distributed processes (`DistributedType.NO`, every `process_index` 0):
a test launched that way passes while testing nothing.

What it changes, and nothing else: `tiller.training.setup_runtime` builds
`Accelerator(cpu=True)`, which under torchrun joins the processes over gloo (`MULTI_CPU`).
This launcher wraps `accelerate.Accelerator` so that, right after that, the shared
accelerator state's `distributed_type` becomes `FSDP` with an FSDP2 plugin holding the
settings of configs/accelerate/fsdp2.yaml, or `DEEPSPEED` with a ZeRO-3 plugin holding those
of configs/accelerate/zero3.yaml (`DS_ACCELERATOR=cpu`). From there the recipes run accelerate's
own FSDP2 / DeepSpeed code: `prepare`, `backward`, `no_sync`, clipping, state dicts.

With `TILLER_TEST_FORWARDS=DIR`, every causal LM tiller loads counts the forwards of its
decoder, and each process writes its count to DIR/forwards-rank<R>.json at exit: under
sharding every forward is a collective, so the counts must match across ranks.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _accelerate_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / "accelerate" / f"{name}.yaml").read_text())


def _fsdp2_plugin():
    from accelerate.utils import FullyShardedDataParallelPlugin

    fsdp = _accelerate_config("fsdp2")["fsdp_config"]
    assert fsdp["fsdp_version"] == 2
    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
        reshard_after_forward=fsdp["fsdp_reshard_after_forward"],
        cpu_offload=fsdp["fsdp_offload_params"],
        state_dict_type=fsdp["fsdp_state_dict_type"],
        cpu_ram_efficient_loading=fsdp["fsdp_cpu_ram_efficient_loading"],
        activation_checkpointing=fsdp["fsdp_activation_checkpointing"],
    )


def _zero3_plugin():
    from accelerate.utils import DeepSpeedPlugin

    ds = _accelerate_config("zero3")["deepspeed_config"]
    return DeepSpeedPlugin(
        zero_stage=ds["zero_stage"],
        gradient_accumulation_steps=ds["gradient_accumulation_steps"],
        gradient_clipping=ds["gradient_clipping"],
        offload_optimizer_device=ds["offload_optimizer_device"],
        offload_param_device=ds["offload_param_device"],
        zero3_init_flag=ds["zero3_init_flag"],
        zero3_save_16bit_model=ds["zero3_save_16bit_model"],
    )


def _force_strategy(strategy: str) -> None:
    import accelerate
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    original = accelerate.Accelerator
    target = DistributedType.FSDP if strategy == "fsdp2" else DistributedType.DEEPSPEED

    class ShardedOnCpu(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            state = self.state
            if state.distributed_type == target:  # a later run in the same processes
                if strategy == "zero3":
                    self.deepspeed_engine_wrapped = None
                return
            assert state.distributed_type == DistributedType.MULTI_CPU and state.num_processes > 1, (
                f"expected several CPU processes over gloo, got {state.distributed_type} x {state.num_processes}")
            if strategy == "fsdp2":
                state.fsdp_plugin = _fsdp2_plugin()
                state.distributed_type = DistributedType.FSDP
            else:
                plugin = _zero3_plugin()
                plugin.select(_from_accelerator_state=True)
                state.deepspeed_plugins = plugin
                state.distributed_type = DistributedType.DEEPSPEED
                self.deepspeed_engine_wrapped = None  # what Accelerator.__init__ sets when given a plugin
            # Every later AcceleratorState() copies PartialState's shared fields over its own:
            # the process-level state must say the same.
            PartialState._shared_state["distributed_type"] = state.distributed_type

    accelerate.Accelerator = ShardedOnCpu


def _count_forwards(folder: Path) -> None:
    import tiller.models

    counts = {"decoder_forwards": 0}
    original = tiller.models.load_causal_lm

    def counted(*args, **kwargs):
        model = original(*args, **kwargs)
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model

        def hook(module, inputs):
            counts["decoder_forwards"] += 1

        decoder.register_forward_pre_hook(hook)
        return model

    tiller.models.load_causal_lm = counted
    rank = int(os.environ.get("RANK", 0))
    atexit.register(lambda: (folder / f"forwards-rank{rank}.json").write_text(json.dumps(counts)))


def _run(args: list[str]) -> int:
    import functools

    from tiller.cli import main as tiller_main
    from tiller.recipes import dpo, reward, rloo, sft

    stop_after = None
    if args[0] == "--stop-after":
        stop_after, args = int(args[1]), args[2:]
    recipes = {"reward": reward, "sft": sft, "dpo": dpo, "rloo": rloo}
    original = recipes[args[0]].run if args[0] in recipes else None
    if stop_after is not None:
        recipes[args[0]].run = functools.partial(original, stop_after=stop_after)
    try:
        return tiller_main(args)
    finally:
        if original is not None:
            recipes[args[0]].run = original


def main() -> int:
    strategy, args = sys.argv[1], sys.argv[2:]
    if strategy not in ("fsdp2", "zero3"):
        raise SystemExit(f"strategy must be fsdp2 or zero3, not {strategy!r}")
    if strategy == "zero3":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    _force_strategy(strategy)
    if os.environ.get("TILLER_TEST_FORWARDS"):
        _count_forwards(Path(os.environ["TILLER_TEST_FORWARDS"]))
    commands, current = [], []
    for arg in args:
        if arg == "--then":
            commands.append(current)
            current = []
        else:
            current.append(arg)
    commands.append(current)
    for command in commands:
        code = _run(command)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
