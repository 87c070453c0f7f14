"""Model cards: every model folder a stage saves carries a README.md in the Hugging Face
convention, so a folder pushed to the Hub describes itself.

The card is YAML front matter (written with huggingface_hub's `ModelCardData`, which ships
with transformers, so the keys and their layout are the Hub's own) followed by markdown: what
the model is, the stage that trained it, what it started from (`<stage>/started_from.json`),
the data and its counts (`<run_dir>/data/stats.json` and what the stage used), the key
settings, the evaluation figures known at save time, the license, the tiller version, and how
to load it. `tiller eval policy` later adds its win rate to the evaluated policy's card
(`add_policy_evaluation`).

Front matter holds only values the Hub accepts: `base_model` is a Hub model id, never a local
path (the Hub rejects those on push), so a model started from a local folder that no tiller
card traces back to a Hub id has no `base_model` key and the body names the folder; an unknown
license is `license: other` in the front matter and "unknown" in the body.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what `model.name: embedded` is (DESIGN.md)
EMBEDDED_LICENSE = "apache-2.0"
UNKNOWN_LICENSE = "unknown — check the base model's license"

# stage -> (what the model is, pipeline_tag, stage tag)
STAGES = {
    "sft": ("a chat model fine-tuned by supervised fine-tuning (SFT) on chosen answers or conversations",
            "text-generation", "sft"),
    "reward": ("a Bradley-Terry reward model: a sequence classifier with one score that rates an assistant "
               "answer in its conversation (higher is better)", "text-classification", "reward-model"),
    "judge": ("a Bradley-Terry reward model trained on the preference pairs the RLOO reward model never saw, "
              "used as the held-out judge of policy evaluation (one score, higher is better)",
              "text-classification", "reward-model"),
    "dpo": ("a chat model trained with Direct Preference Optimization (DPO) on chosen/rejected pairs",
            "text-generation", "dpo"),
    "rloo": ("a chat model trained with REINFORCE Leave-One-Out (RLOO) against a reward",
             "text-generation", "rloo"),
    "ppo": ("a chat model trained with PPO (a value model, GAE, per-token KL penalty) against a reward",
            "text-generation", "ppo"),
}

# Settings shown per stage: dotted paths into the stage's config section (missing ones are skipped,
# None values too), shown with the section's name so `--set <key>=<value>` reproduces them.
_LOOP = ["train.epochs", "train.max_steps", "train.pairs_per_step", "train.micro_batch_per_device",
         "train.max_length", "train.truncation"]
_OPTIM = ["optim.lr", "optim.scheduler", "optim.warmup_ratio", "optim.weight_decay", "optim.max_grad_norm"]
SETTINGS = {
    "sft": _OPTIM + _LOOP + ["source", "assistant_only_loss", "packing"],
    "reward": _OPTIM + _LOOP + ["train_subset", "margin_scale", "center_coef", "packing"],
    "dpo": _OPTIM + _LOOP + ["beta", "loss_type", "label_smoothing", "train_subset", "precompute_ref_logps"],
    "rloo": _OPTIM + ["max_steps", "total_episodes", "prompts_per_step", "completions_per_prompt",
                      "micro_batch_per_device", "num_ppo_epochs", "advantage", "beta", "kl_estimator", "kl_in",
                      "clip_eps", "aggregation", "whiten_advantages", "missing_eos_penalty", "degeneration_penalty",
                      "max_prompt_tokens", "prompt_split", "prompt_subset", "rollout.engine",
                      "rollout.max_new_tokens", "rollout.temperature", "rollout.top_p", "rollout.top_k",
                      "reward.backend", "reward.path", "reward.function", "reward.url", "reward.model_name"],
    "ppo": _OPTIM + ["max_steps", "total_episodes", "prompts_per_step", "completions_per_prompt",
                     "micro_batch_per_device", "num_mini_batches", "ppo_epochs", "beta", "kl_estimator", "gamma", "lam",
                     "clip_eps", "clip_value", "vf_coef", "whiten_advantages", "whiten_rewards", "value_model",
                     "missing_eos_penalty", "degeneration_penalty", "max_prompt_tokens", "prompt_split",
                     "prompt_subset", "rollout.engine", "rollout.max_new_tokens", "rollout.temperature",
                     "reward.backend", "reward.path", "reward.function", "reward.url", "reward.model_name"],
}
SECTION = {"judge": "reward"}  # the judge stage trains with the reward section's settings


@dataclass
class CardInfo:
    """What a stage knows about the model it saves, for its card."""
    cfg: Any                # the run's Config
    stage: str              # sft | reward | judge | dpo | rloo
    start: str              # the model the stage started from (used when no started_from.json exists)
    figures: dict = field(default_factory=dict)  # the stage's evaluation report at save time


def tiller_version() -> str:
    try:
        from importlib.metadata import version

        return version("tiller")
    except Exception:  # not installed as a distribution (a source checkout on sys.path)
        from tiller import __version__

        return __version__


# ----------------------------------------------------------------------------- where the model comes from


def read_card_metadata(folder: str | Path) -> dict:
    """The front matter of `folder`/README.md as a dict ({} when there is none or it does not parse)."""
    path = Path(folder) / CARD_NAME
    if not path.is_file():
        return {}
    try:
        from huggingface_hub.repocard import metadata_load

        return metadata_load(path) or {}
    except Exception:
        return {}


def _is_tiller_card(meta: dict) -> bool:
    tags = meta.get("tags") or []
    return isinstance(tags, list) and "tiller" in tags


def _looks_like_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name)) and ".." not in name


def _hub_id_from_cache_path(path: Path) -> str | None:
    """`.../models--org--name/snapshots/<hash>` (a Hub download in the HF cache) -> "org/name"."""
    match = re.search(r"models--([^/]+?)--([^/]+)/snapshots/", str(path).replace(os.sep, "/") + "/")
    return f"{match.group(1)}/{match.group(2)}" if match else None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_license(repo_id: str, revision: str | None = None) -> str | None:
    """The license a Hub model's card declares: from the local HF cache when its README is there,
    else (not offline) asked of the Hub with a short timeout; None when unknown."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, CARD_NAME, revision=revision)
        if isinstance(cached, str):
            license_ = read_card_metadata(Path(cached).parent).get("license")
            if license_:
                return str(license_)
        if _offline():
            return None
        from huggingface_hub import HfApi

        card = HfApi().model_info(repo_id, revision=revision, timeout=10).card_data
        return str(card.license) if card is not None and card.license else None
    except Exception:
        return None


@dataclass
class Base:
    hub_id: str | None      # a Hub model id for the front matter's base_model, when one is known
    license: str | None     # the base model's license identifier, when known
    note: str               # one line on how these were found


def trace_base(name: str, revision: str | None = None, follow_tiller_cards: bool = True) -> Base:
    """The Hub model `name` (a config model name, local folder or hub id) comes from, and its license.

    A folder saved by tiller carries a card: its base model and license carry over (the chain
    sft -> dpo -> rloo keeps naming the Hub model it all started from). The embedded model is
    SmolLM2-135M-Instruct (Apache-2.0)."""
    from tiller.models import EMBEDDED_NAMES, embedded_cache_folder

    if name.lower() in EMBEDDED_NAMES:
        return Base(EMBEDDED_HUB_ID, EMBEDDED_LICENSE, f"the embedded model is {EMBEDDED_HUB_ID}")
    path = Path(name).expanduser()
    if path.exists():
        if path.resolve() == embedded_cache_folder().resolve():
            return Base(EMBEDDED_HUB_ID, EMBEDDED_LICENSE, f"the embedded model is {EMBEDDED_HUB_ID}")
        meta = read_card_metadata(path)
        if follow_tiller_cards and _is_tiller_card(meta):
            base = meta.get("base_model")
            license_ = meta.get("license") if meta.get("license") != "other" else None  # tiller's "unknown"
            return Base(base if isinstance(base, str) else None, license_,
                        f"carried over from the tiller card of {path}")
        hub_id = _hub_id_from_cache_path(path.resolve())
        license_ = meta.get("license") or (hub_license(hub_id, revision) if hub_id else None)
        if hub_id:
            return Base(hub_id, license_, f"{path} is a Hub download of {hub_id}")
        return Base(None, license_, f"{path} is a local folder with no Hub id on record")
    if _looks_like_hub_id(name):
        return Base(name, hub_license(name, revision), f"{name} is a Hub model id")
    return Base(None, None, f"{name} is neither a local folder nor a Hub model id")


# ----------------------------------------------------------------------------- the card


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if obj is None or not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) or "[]"
    return str(value)


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return out


def _data_source(data: Any) -> str:
    if data.source == "hub":
        config = f", config `{data.hub_config}`" if getattr(data, "hub_config", None) else ""
        return f"the Hugging Face dataset [`{data.hub_id}`](https://huggingface.co/datasets/{data.hub_id}){config}"
    if data.source == "local":
        files = ", ".join(f"{split}: `{path}`" for split, path in (data.files or {}).items())
        return f"local files ({files})" if files else "local files"
    return f"the small synthetic `{data.format}` sample bundled with tiller (for demos and tests, not a real dataset)"


def _data_section(info: CardInfo) -> list[str]:
    cfg = info.cfg
    data = cfg.data
    lines = ["## Data", "",
             f"- source: {_data_source(data)}; format `{data.format}`",
             f"- filters: languages {_fmt(data.languages) if data.languages else 'all'}, domains "
             f"{_fmt(data.domains) if data.domains else 'all'}, prompts of at most {data.max_prompt_tokens} tokens"]
    stats_path = Path(cfg.run_dir) / "data" / "stats.json"
    try:
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else None
    except (OSError, json.JSONDecodeError):
        stats = None
    if stats and stats.get("splits"):
        columns = [("rows_read", "rows read"), ("pairs_kept", "pairs kept"), ("prompts_kept", "prompts kept"),
                   ("conversations_kept", "conversations kept"), ("ties", "ties"), ("rows_dropped", "rows dropped")]
        splits = stats["splits"]
        present = [(k, label) for k, label in columns if any(k in s for s in splits.values())]
        lines += ["", "Counts from the data stage (`data/stats.json`):", ""]
        lines += _table(["split"] + [label for _, label in present],
                        [[name] + [s.get(k, "") for k, _ in present] for name, s in splits.items()])
        held = stats.get("held_out")
        if isinstance(held, dict) and held.get("text"):
            lines += ["", "```", str(held["text"]).strip(), "```"]
    else:
        lines += ["- no `data/stats.json` in the run directory: the counts of the data stage are not known"]
    used = _used_counts(info)
    if used:
        lines += ["", "Used by this stage: " + "; ".join(used) + "."]
    return lines + [""]


def _used_counts(info: CardInfo) -> list[str]:
    f, stage, section = info.figures, info.stage, _get(info.cfg, SECTION.get(info.stage, info.stage))
    used = []
    if stage in ("reward", "judge", "dpo"):
        if f.get("train_pairs") is not None:
            subset = f.get("subset") or _get(section, "train_subset")
            used.append(f"{f['train_pairs']} training pairs" + (f" (subset `{subset}`)" if subset else ""))
        if f.get("n") is not None:
            used.append(f"{f['n']} validation pairs")
    elif stage == "sft":
        if f.get("train_examples") is not None:
            used.append(f"{f['train_examples']} training examples (from `{_get(section, 'source')}`)")
        if f.get("n") is not None:
            used.append(f"{f['n']} validation conversations")
    elif stage in ("rloo", "ppo"):
        if f.get("prompts") is not None:
            used.append(f"{f['prompts']} prompts of the `{_get(section, 'prompt_split')}` split "
                        f"(subset `{_get(section, 'prompt_subset')}`)")
    if f.get("steps") is not None:
        used.append(f"{f['steps']} optimizer steps")
    return used


def _settings_section(info: CardInfo, adapter: bool) -> list[str]:
    cfg, name = info.cfg, SECTION.get(info.stage, info.stage)
    section = _get(cfg, name)
    rows = []
    for key in SETTINGS.get(name, []):
        value = _get(section, key)
        if value is not None:
            rows.append([f"`{name}.{key}`", value])
    lora = _get(section, "lora")
    if lora is not None and lora.enabled:
        rows.append([f"`{name}.lora`", f"r {lora.r}, alpha {lora.alpha}, dropout {lora.dropout:g}, targets "
                     f"{_fmt(lora.target_modules)}" + (f", last {lora.last_n_layers} layers" if lora.last_n_layers else "")
                     + ("; saved as a LoRA adapter" if adapter else "; merged into the weights on save")])
    elif lora is not None:
        rows.append([f"`{name}.lora.enabled`", "false (full fine-tuning)"])
    for key in ("seed", "model.dtype", "model.mixed_precision", "model.enable_thinking"):
        value = _get(cfg, key)
        if value is not None:
            rows.append([f"`{key}`", value])
    return ["## Training settings", "", "The stage's key settings (the run's `config.yaml` in the stage folder has "
            "them all):", ""] + _table(["setting", "value"], rows) + [""]


def rloo_figures(metrics_path: str | Path) -> dict:
    """The RLOO figures of a card, from the stage's metrics.jsonl: the mean reward-model score of
    the first and the last logged step, and the last step's KL, RLHF reward and mean length."""
    from tiller.tracking import read_metrics

    rows = [r for r in read_metrics(metrics_path) if isinstance(r.get("objective/scores"), (int, float))]
    if not rows:
        return {}
    first, last = rows[0], rows[-1]
    figures = {"first_step": first["step"], "last_step": last["step"], "scores_first": first["objective/scores"],
               "scores_last": last["objective/scores"]}
    for key, name in (("objective/kl", "kl_last"), ("objective/rlhf_reward", "rlhf_reward_last"),
                      ("completions/mean_length", "mean_length_last")):
        if isinstance(last.get(key), (int, float)):
            figures[name] = last[key]
    return figures


def _evaluation_section(info: CardInfo) -> list[str]:
    f, stage = info.figures, info.stage
    lines = ["## Evaluation at save time", ""]
    if stage in ("reward", "judge") and f.get("accuracy") is not None:
        ci = f.get("accuracy_ci95") or [None, None]
        lines.append(f"- validation pairwise accuracy (chosen scored above rejected; ties count half): "
                     f"**{_num(f['accuracy'])}** (95% Wilson interval {_num(ci[0])}-{_num(ci[1])}) on {f.get('n')} pairs")
        if f.get("mean_margin") is not None:
            lines.append(f"- mean score margin (chosen - rejected): {_num(f['mean_margin'])}")
    elif stage == "dpo" and (f.get("accuracy_after") is not None or f.get("accuracy_before") is not None):
        lines.append(f"- validation implicit-reward accuracy (beta * log-ratio to the reference, chosen above "
                     f"rejected): {_num(f.get('accuracy_before'))} before training -> **{_num(f.get('accuracy_after'))}** "
                     f"after, on {f.get('n')} pairs")
        if f.get("margin_after") is not None:
            lines.append(f"- mean implicit-reward margin after training: {_num(f['margin_after'])}")
    elif stage == "sft" and f.get("loss_after") is not None:
        lines.append(f"- validation loss (mean per token): {_num(f.get('loss_before'), 4)} before training -> "
                     f"**{_num(f['loss_after'], 4)}** after, on {f.get('n')} conversations")
    elif stage in ("rloo", "ppo") and f.get("scores_last") is not None:
        lines.append(f"- mean reward score of the sampled completions (`objective/scores`): "
                     f"{_num(f['scores_first'])} at step {f['first_step']} -> **{_num(f['scores_last'])}** at step "
                     f"{f['last_step']}")
        if f.get("kl_last") is not None:
            lines.append(f"- KL to the reference at the last step (`objective/kl`): {_num(f['kl_last'], 4)}")
        if f.get("rlhf_reward_last") is not None:
            lines.append(f"- RLHF reward at the last step (score - penalties - beta * KL): {_num(f['rlhf_reward_last'])}")
        if f.get("mean_length_last") is not None:
            lines.append(f"- mean completion length at the last step: {_num(f['mean_length_last'], 1)} tokens")
        lines.append("- these are training-time figures on the training prompts; `tiller eval policy` measures "
                     "the win rate against the starting model on held-out prompts")
    else:
        lines.append("- none recorded at save time")
    return lines + [""]


def peft_can_load(folder: str | Path) -> bool:
    """Whether plain peft (AutoPeftModel) loads the adapter in `folder`: its base is a Hub id or a
    full model folder, not tiller's `embedded`, a path relative to the folder, or another adapter."""
    from tiller.models import EMBEDDED_NAMES, adapter_base

    base = json.loads((Path(folder) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return not (base.lower() in EMBEDDED_NAMES or base.startswith(("./", "../"))
                or adapter_base(Path(base).expanduser()) is not None)


def _load_section(stage: str, adapter: bool, plain_peft: bool = True) -> list[str]:
    where = '"path/to/this/folder"'
    reward = stage in ("reward", "judge")
    if adapter and not plain_peft:  # only tiller resolves the base this adapter names
        loader = "load_reward_model" if reward else "load_causal_lm"
        code = [f"from tiller.models import {loader}, load_tokenizer",
                f"model = {loader}({where})  # its base (adapter_config.json), then this adapter",
                f"tokenizer = load_tokenizer({where})"]
        note = ["A LoRA adapter on a base that plain `peft` cannot resolve (tiller's `embedded` model, another "
                "stage's folder of the same run, or another adapter): tiller loads it. For a full model, train "
                "with `lora.merge_on_save: true`.", ""]
        return _load_code(reward, code, note)
    cls = ("AutoPeftModelFor" if adapter else "AutoModelFor") + ("SequenceClassification" if reward else "CausalLM")
    imports = ([f"from peft import {cls}", "from transformers import AutoTokenizer"] if adapter
               else [f"from transformers import AutoTokenizer, {cls}"])
    code = imports + [f"model = {cls}.from_pretrained({where}{', num_labels=1' if reward else ''})  # or its Hub repo id",
                      f"tokenizer = AutoTokenizer.from_pretrained({where})"]
    note = (["A LoRA adapter: `peft` loads it on top of its base model (named in `adapter_config.json`).", ""]
            if adapter else [])
    return _load_code(reward, code, note)


def _load_code(reward: bool, code: list[str], note: list[str]) -> list[str]:
    if reward:
        code += ["# score an answer: its conversation rendered with the chat template, the answer included",
                 'text = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)',
                 'score = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0]']
    else:
        code += ["# chat: render the messages with the model's chat template, then generate",
                 'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", '
                 'return_dict=True)',
                 "output = model.generate(**inputs, max_new_tokens=128)",
                 'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))']
    return ["## How to load", ""] + note + ["```python"] + code + ["```", ""]


def build_card(info: CardInfo, folder: str | Path, stage_dir: str | Path | None = None):
    """The card (a huggingface_hub `ModelCard`) for the saved model in `folder`; `stage_dir` holds
    the stage's started_from.json (default: the folder's parent, `<run_dir>/<stage>`)."""
    from huggingface_hub import ModelCard, ModelCardData

    from tiller.models import adapter_base, read_origin

    folder = Path(folder)
    stage_dir = Path(stage_dir) if stage_dir is not None else folder.parent
    cfg, stage = info.cfg, info.stage
    what, pipeline_tag, stage_tag = STAGES[stage]
    adapter = (folder / "adapter_config.json").is_file()
    origin = read_origin(stage_dir)
    start = str(origin["model"]) if origin else info.start
    revision = (origin or {}).get("revision") or _get(cfg, "model.revision")
    if adapter:
        # An adapter needs the exact model it was trained on: that model's own Hub id, if any.
        base = trace_base(adapter_base(folder) or start, revision, follow_tiller_cards=False)
    else:
        base = trace_base(start, revision)

    data = cfg.data
    card_data = ModelCardData(
        base_model=base.hub_id,
        library_name="peft" if adapter else "transformers",
        license=base.license or "other",
        tags=["tiller", "rlhf", stage_tag] + (["lora"] if adapter else []),
        datasets=[data.hub_id] if data.source == "hub" and data.hub_id else None,
        pipeline_tag=pipeline_tag,
    )

    title = f"{stage} model trained with tiller"
    lines = [f"# {title}", "",
             f"This folder holds {what}, saved by tiller's `{stage}` stage "
             + ("as a LoRA adapter." if adapter else "as a full Hugging Face model (safetensors) with its tokenizer "
                "and chat template."), "",
             "## Started from", ""]
    if origin:
        lines.append(f"- model: `{origin['model']}` (chosen by: {origin.get('chosen_by', 'not recorded')})"
                     + (f" at revision `{origin['revision']}`" if origin.get("revision") else ""))
        if origin.get("adapter"):
            lines.append(f"- that folder is a LoRA adapter on `{origin['base_model']}`, {origin.get('adapter_handling')}")
    else:
        lines.append(f"- model: `{start}`" + (f" at revision `{revision}`" if revision else ""))
    if adapter:
        lines.append(f"- the adapter applies to `{adapter_base(folder)}`")
    lines.append("- base model on the Hub: " + (f"[`{base.hub_id}`](https://huggingface.co/{base.hub_id})"
                                                 if base.hub_id else "not known") + f" ({base.note})")
    lines.append("")
    lines += _data_section(info)
    lines += _settings_section(info, adapter)
    lines += _evaluation_section(info)
    license_text = (f"`{base.license}`: the license of the base model, which this model inherits" if base.license
                    else f"{UNKNOWN_LICENSE} (the front matter says `other`, the Hub's value when no license "
                         "identifier is known)")
    lines += ["## License", "", license_text
              + (". The training data has its own license." if data.source == "hub" else "."), ""]
    lines += _load_section(stage, adapter, plain_peft=not adapter or peft_can_load(folder))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines += ["## Produced by", "", f"tiller {tiller_version()}, stage `{stage}`, run directory `{cfg.run_dir}`, "
              f"saved {when}.", ""]
    return ModelCard("---\n" + card_data.to_yaml() + "\n---\n\n" + "\n".join(lines))


def write_card(info: CardInfo, folder: str | Path, stage_dir: str | Path | None = None) -> Path:
    path = Path(folder) / CARD_NAME
    build_card(info, folder, stage_dir).save(path)
    return path


def write_fallback_card(folder: str | Path, stage: str, error: Exception) -> Path:
    """A minimal card when building the full one failed: the model is saved whatever the card does."""
    from huggingface_hub import ModelCard, ModelCardData

    _, pipeline_tag, stage_tag = STAGES.get(stage, ("", None, stage))
    data = ModelCardData(license="other", library_name="transformers", tags=["tiller", "rlhf", stage_tag],
                         pipeline_tag=pipeline_tag)
    text = (f"# {stage} model trained with tiller\n\nSaved by tiller {tiller_version()}'s `{stage}` stage. The full "
            f"card could not be written ({type(error).__name__}: {error}); see the stage folder's config.yaml and "
            f"eval.json.\n\n## License\n\n{UNKNOWN_LICENSE}.\n")
    path = Path(folder) / CARD_NAME
    ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + text).save(path)
    return path


# ----------------------------------------------------------------------------- evaluation after training


def add_policy_evaluation(policy_dir: str | Path, summary: dict) -> bool:
    """Add (or replace) the result of `tiller eval policy` in the evaluated policy's card, one
    block per evaluation label. Only cards tiller wrote are touched; returns whether it wrote.
    A card that cannot be updated gives a warning, never an error: the evaluation is saved."""
    try:
        return _add_policy_evaluation(policy_dir, summary)
    except Exception as error:  # noqa: BLE001
        print(f"[eval] warning: could not add the evaluation to the model card in {policy_dir} "
              f"({type(error).__name__}: {error})", flush=True)
        return False


def _add_policy_evaluation(policy_dir: str | Path, summary: dict) -> bool:
    from huggingface_hub import ModelCard

    path = Path(policy_dir) / CARD_NAME
    if not path.is_file() or not _is_tiller_card(read_card_metadata(policy_dir)):
        return False
    card = ModelCard.load(path)
    label = re.sub(r"[^\w.-]", "_", str(summary.get("label", "policy")))
    begin, end = f"<!-- tiller-eval:{label} -->", f"<!-- /tiller-eval:{label} -->"
    s = summary
    lines = [begin, f"## Evaluation against the starting model (`tiller eval policy`, `{label}`)", "",
             f"- reference: `{s.get('reference')}` ({s.get('reference_source')}); judge: `{s.get('judge')}`; "
             f"{s.get('n')} held-out prompts",
             f"- win rate against the reference (ties count half): **{_num(s.get('win_rate'))}** (95% CI "
             f"{_num(s.get('ci_low'))}-{_num(s.get('ci_high'))}; {_fmt(s.get('wins'))} wins, {_fmt(s.get('ties'))} "
             f"ties, {_fmt(s.get('losses'))} losses)"]
    if s.get("guarded_win_rate") is not None:
        lines.append(f"- guarded win rate (a degenerate answer against a sound one loses): "
                     f"{_num(s['guarded_win_rate'])} (95% CI {_num(s.get('guarded_ci_low'))}-"
                     f"{_num(s.get('guarded_ci_high'))})")
    if s.get("reward_improvement") is not None:
        lines.append(f"- judge score: policy {_num(s.get('reward_policy_mean'))}, reference "
                     f"{_num(s.get('reward_reference_mean'))}, improvement {_num(s['reward_improvement'])} (95% CI "
                     f"{_num(s.get('reward_improvement_ci_low'))}-{_num(s.get('reward_improvement_ci_high'))})")
    if s.get("kl_mean") is not None:
        lines.append(f"- KL to the reference along the policy's answers: {_num(s['kl_mean'], 4)}; length ratio "
                     f"(policy / reference) {_num(s.get('length_ratio'), 2)}")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"- evaluated {when} with tiller {tiller_version()}", end]
    block = "\n".join(lines)
    text = card.text
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        anchor = "## License"
        at = text.find(anchor)
        text = (text[:at] + block + "\n\n" + text[at:]) if at >= 0 else text.rstrip("\n") + "\n\n" + block + "\n"
    card.text = text
    tmp = path.with_name(f".{path.name}.tmp")
    card.save(tmp)
    os.replace(tmp, path)
    return True
