"""Shared fixtures: offline mode, a tiny model built once per session, prompt files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TILLER_QUIET_CONFIG", "1")
ROOT = Path(__file__).resolve().parents[1]
# tests/helpers holds reward functions that recipes import by name ("tests.helpers.x:fn").
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot when cores are shared.
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A folder holding only the tiny tokenizer (trained locally in about a second) and a stub
    config.json: all the data stage loads. Building the model too would only cost time."""
    import json as _json

    from tiller.tiny import build_tokenizer

    folder = tmp_path_factory.mktemp("tiny") / "m"
    build_tokenizer().save_pretrained(folder)
    (folder / "config.json").write_text(_json.dumps({"model_type": "llama"}))
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    from tiller.models import load_tokenizer

    return load_tokenizer(str(tiny_dir))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from tiller.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama")


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    from tiller.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3", arch="qwen3")


QWEN3_CHAT_TEMPLATE = ROOT / "tests" / "fixtures" / "qwen3_chat_template.jinja"  # Qwen/Qwen3-8B's own


@pytest.fixture(scope="session")
def tiny_qwen3_thinking(tiny_qwen3, tmp_path_factory) -> Path:
    """The tiny Qwen3 with Qwen3's real chat template (tests/fixtures/README.md): thinking modes,
    the empty <think> block before the last answer, think blocks dropped from earlier turns."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny") / "qwen3-thinking"
    shutil.copytree(tiny_qwen3, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE.read_text()
    tokenizer.save_pretrained(folder)
    return folder


QUESTIONS = [
    "What is the capital of France?", "Name a primary color.", "How many legs does a spider have?",
    "Give me a synonym for happy.", "What is two plus two?", "Why is the sky blue?",
    "Suggest a name for a cat.", "What do bees make?", "How do I boil an egg?", "What is the largest ocean?",
    "Write a haiku about rain.", "What is the opposite of cold?", "Which planet is red?",
    "How many days are in a week?", "What language is spoken in Brazil?", "What is ice made of?",
]


def write_prompts(run_dir: Path, split: str = "train", questions: list[str] | None = None) -> None:
    """A data-stage prompts file, as `tiller data` writes it."""
    folder = Path(run_dir) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{split}.prompts.jsonl", "w") as f:
        for i, q in enumerate(questions or QUESTIONS):
            f.write(json.dumps({"messages": [{"role": "user", "content": q}], "domain": "general",
                                "language": "english", "source_row": i + 1}) + "\n")
    (folder / "DONE").write_text("done\n")


def toy_pairs(n: int, offset: int = 0) -> list[dict]:
    """Learnable toy preference pairs: the chosen answer is polite and on topic, the rejected
    one curt. Different `offset`s give different questions (train vs validation)."""
    topics = ["rivers", "stars", "bread", "trains", "music", "gardens", "clouds", "maps", "bridges", "birds",
              "coffee", "snow", "books", "lamps", "boats", "shoes", "paint", "clocks", "tea", "hills"]
    pairs = []
    for i in range(offset, offset + n):
        topic = topics[i % len(topics)]
        q = f"Tell me one fact about {topic} number {i}."
        pairs.append({
            "prompt": [{"role": "user", "content": q}],
            "chosen": f"Thank you for asking! Here is a fact about {topic}: they are interesting and useful.",
            "rejected": "No. Figure it out yourself.",
            "margin": float(1 + i % 3), "domain": "general" if i % 4 else "stem", "language": "english", "source_row": i + 1,
        })
    return pairs


def write_pairs(run_dir: Path, train: list[dict], validation: list[dict]) -> None:
    folder = Path(run_dir) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("validation", validation)):
        with open(folder / f"{split}.pairs.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    (folder / "DONE").write_text("done\n")


def accelerate_launch(stage_args: list[str], processes: int, timeout: int = 300):
    """Run `python -m tiller ...` under `accelerate launch` with `processes` CPU processes.

    `--cpu --num_processes 2` starts ONE process with accelerate 1.15 (its simple launcher);
    `--multi_gpu` goes through torchrun, and with no visible GPU the processes join over gloo."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TILLER_QUIET_CONFIG": "1"}
    mode = ["--multi_gpu"] if processes > 1 else ["--cpu"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tiller", *stage_args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
