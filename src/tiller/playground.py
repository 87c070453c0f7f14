"""The playground: `tiller playground RUN_DIR` serves a local page to talk to a trained policy.

A prompt goes to the reference (the model the chosen stage started from, as `tiller eval`
determines it) and to the trained policy of the chosen stage (rloo, ppo, dpo or sft: whichever
the run folder holds). Both answers stream onto the page side by side as they are generated,
and once complete each is scored by the run's held-out judge (<run_dir>/judge/model) and by the
reward model the policy was optimized against (<run_dir>/reward/model), when those exist. The
chat keeps two transcripts: each model sees its own earlier answers, so the page shows what a
conversation with each would be. Greedy or temperature sampling, a max-new-tokens limit, and a
few held-out prompts of the run's evaluation split to click.

The UI library is Gradio, an optional extra (`pip install 'tiller[playground]'`): it is what ML
users know from model demos, it is maintained, it has a chat component and streams a Python
generator's updates to the page without any JavaScript of ours, and it needs no build step.
It is a large dependency tree (FastAPI, uvicorn, pandas, ...) that training never needs, so it
is not a core dependency; `import tiller` and every other stage work without it, and this module
imports it only inside `build_app` / `serve`.

Everything but the page is plain Python testable without a browser: `Playground` loads the
models once each (with the loaders every stage uses: `models.load_frozen`, `load_tokenizer`,
`rewards.classifier.ClassifierReward`; a judge and a reward model that are LoRA adapters of one
base share it, as in the evaluation) and answers a chat turn (`Playground.turn`), and
`stream_side_by_side` streams two models' answers at once, each generating in its own thread.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from tiller.chat import render_prompt
from tiller.config import Config, RewardBackendConfig
from tiller.eval_inputs import eval_prompts, held_policy_stages, reference_for
from tiller.rollout import Sampling

# The policy stages the page can talk to, in the order the dropdown lists them.
PLAYGROUND_STAGES = ("rloo", "ppo", "dpo", "sft")
EXAMPLE_COUNT = 5
DEFAULT_MAX_NEW_TOKENS = 128
# The scorers of each answer: a label on the page, the run's folder, what the page says without it.
SCORERS = (("judge", "judge", "no judge in this run"),
           ("reward model", "reward", "no reward model in this run"))


class MissingExtraError(RuntimeError):
    """The playground's optional dependency is not installed (the CLI prints it as one line)."""


def import_gradio():
    try:
        import gradio
    except ImportError:
        raise MissingExtraError("the playground needs gradio, an optional extra: pip install 'tiller[playground]'") from None
    return gradio


# ----------------------------------------------------------------------------- the run folder


def stage_config(run_dir: Path, stage: str) -> Config:
    """The config a stage ran with (its resolved <stage>/config.yaml), with run_dir pointing at
    the folder given (a run folder may have moved since); defaults when the stage wrote none."""
    from tiller.config_loading import config_from_dict, load_config

    saved = run_dir / stage / "config.yaml"
    if saved.is_file():
        return load_config(saved, [f"run_dir={run_dir}"])
    return config_from_dict({"run_dir": str(run_dir)})


def trained_stages(run_dir: Path) -> list[str]:
    """The stages of PLAYGROUND_STAGES the run holds a trained policy of (what evaluation reads)."""
    return held_policy_stages(run_dir, list(PLAYGROUND_STAGES))


def held_out_examples(cfg: Config, tokenizer, count: int = EXAMPLE_COUNT) -> list[str]:
    """The first `count` single-turn prompts of the evaluation split, chosen as `tiller eval`
    chooses its prompts; none when the run has no data stage (the page then shows no examples)."""
    try:
        messages = eval_prompts(cfg, tokenizer)[0]
    except FileNotFoundError:
        return []
    # A multi-turn prompt does not fit in one prompt box: only the single-turn ones.
    return [m[0]["content"] for m in messages if len(m) == 1 and m[0]["role"] == "user"][:count]


# ----------------------------------------------------------------------------- streaming two answers


class _QueueStreamer:
    """A transformers streamer that puts (side, answer so far) into a queue at every new token.
    The whole answer is decoded each time (answers are short): a token that ends inside a
    multi-byte character shows once the next one completes it."""

    def __init__(self, tokenizer, side: int, out: queue.Queue):
        self.tokenizer, self.side, self.out = tokenizer, side, out
        self.tokens: list[int] = []
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() hands the prompt over first
            self.prompt_seen = True
            return
        self.tokens.extend(value.reshape(-1).tolist())
        self.out.put((self.side, self.tokenizer.decode(self.tokens, skip_special_tokens=True)))

    def end(self) -> None:
        pass


def _generate_into(model, tokenizer, prompt_ids: list[int], sampling: Sampling, streamer: _QueueStreamer,
                   out: queue.Queue) -> None:
    """One model's answer, streamed into `out`; then (side, None) when done, or the exception."""
    try:
        kwargs = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if sampling.temperature > 0:
            kwargs = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": None}
        ids = torch.tensor([prompt_ids], device=model.device)
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=sampling.max_new_tokens,
                           pad_token_id=tokenizer.pad_token_id, streamer=streamer, **kwargs)
        out.put((streamer.side, None))
    except Exception as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
        out.put((streamer.side, error))


def stream_side_by_side(models: tuple, tokenizer, transcripts: tuple[list[dict], list[dict]], sampling: Sampling,
                        enable_thinking: bool | None = None) -> Iterator[tuple[str, str]]:
    """Two models answer their own transcripts at once, each in its own thread: yields (first
    model's answer so far, second's) every time either grows, last with both answers complete.
    Generating both together rather than one after the other puts both first tokens on the page
    after one prefill each, instead of the second after the whole first answer."""
    out: queue.Queue = queue.Queue()
    answers = ["", ""]
    threads = []
    for side, (model, messages) in enumerate(zip(models, transcripts)):
        prompt_ids = tokenizer(render_prompt(tokenizer, messages, enable_thinking), add_special_tokens=False)["input_ids"]
        streamer = _QueueStreamer(tokenizer, side, out)
        thread = threading.Thread(target=_generate_into, args=(model, tokenizer, prompt_ids, sampling, streamer, out),
                                  daemon=True)
        thread.start()
        threads.append(thread)
    running = len(threads)
    while running:
        side, text = out.get()
        if isinstance(text, Exception):
            raise text
        if text is None:
            running -= 1
            continue
        answers[side] = text
        yield answers[0], answers[1]
    for thread in threads:
        thread.join()
    yield answers[0], answers[1]


# ----------------------------------------------------------------------------- the models of one run


@dataclasses.dataclass
class Turn:
    """One exchange as it streams: both answers so far; the scores once both are complete
    (per side: scorer label -> score, or None when the run has no such model)."""

    reference: str
    policy: str
    reference_scores: dict[str, float | None] | None = None
    policy_scores: dict[str, float | None] | None = None


class Playground:
    """The models of one run folder, each loaded once, on first use."""

    def __init__(self, run_dir: str | Path, device: str | None = None):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"run folder not found: {self.run_dir}")
        self.stages = trained_stages(self.run_dir)
        if not self.stages:
            raise FileNotFoundError(f"{self.run_dir} holds no trained policy (no {'/'.join(PLAYGROUND_STAGES)} folder "
                                    "with a model and started_from.json): train one first, e.g. `tiller rloo --config FILE`")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._models: dict[tuple[str, str | None], torch.nn.Module] = {}
        self._tokenizers: dict[str, object] = {}
        self._scorers: dict[str, object | None] = {}
        self._together: object | None = None  # the judge and reward model on one base, once loaded
        self._together_checked = False
        self._configs: dict[str, Config] = {}

    def policy_path(self, stage: str) -> Path:
        """<run_dir>/<stage>/model, or an error that names the stages the run does hold."""
        if stage not in self.stages:
            raise FileNotFoundError(f"this run has no trained {stage} policy ({self.run_dir / stage / 'model'} does not "
                                    f"exist); it has: {', '.join(self.stages)}")
        return self.run_dir / stage / "model"

    def config(self, stage: str) -> Config:
        if stage not in self._configs:
            self._configs[stage] = stage_config(self.run_dir, stage)
        return self._configs[stage]

    def reference(self, stage: str) -> tuple[str, str | None, str]:
        """(reference model, its revision, why): what the stage's policy started from, as
        `tiller eval policy` determines it."""
        return reference_for(self.config(stage), str(self.policy_path(stage)))

    def tokenizer(self, stage: str):
        """The policy's tokenizer: both models read the prompt as the policy does (as in evaluation)."""
        from tiller.models import load_tokenizer

        path = str(self.policy_path(stage))
        if path not in self._tokenizers:
            self._tokenizers[path] = load_tokenizer(path, self.config(stage).model)
        return self._tokenizers[path]

    def _model(self, name: str, model_cfg) -> torch.nn.Module:
        from tiller.models import load_frozen

        key = (name, model_cfg.revision)
        if key not in self._models:
            self._models[key] = load_frozen(name, model_cfg, self.device)
        return self._models[key]

    def models(self, stage: str) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(reference, policy) of a stage, loaded frozen the way evaluation loads them."""
        cfg = self.config(stage)
        reference, revision, _ = self.reference(stage)
        policy = self._model(str(self.policy_path(stage)), cfg.model)
        return self._model(reference, dataclasses.replace(cfg.model, revision=revision)), policy

    def scorer(self, label: str):
        """The run's judge or optimized reward model (a ClassifierReward), None when the run has none."""
        if label not in self._scorers:
            from tiller.rewards.classifier import ClassifierReward

            folder = dict((lbl, f) for lbl, f, _ in SCORERS)[label]
            path = self.run_dir / folder / "model"
            self._scorers[label] = (ClassifierReward(str(path), RewardBackendConfig(backend="classifier"), self.device)
                                    if path.exists() else None)
        return self._scorers[label]

    def scorers_on_one_base(self):
        """The judge and the reward model as LoRA adapters of one base, loaded once and scored
        together (`tiller.rewards.shared_base.ScoresOnOneBase`, as the evaluation does), when the
        run holds both as adapters of one base (the demo and the flagship recipe train them so):
        one copy of the base weights instead of two. Else None, and each loads on its own (the
        reason is printed)."""
        if not self._together_checked:
            from tiller.rewards.classifier import ClassifierReward
            from tiller.rewards.shared_base import ScoresOnOneBase, load_adapters_on_one_base, why_not_one_base

            self._together_checked = True
            paths = [self.run_dir / folder / "model" for _, folder, _ in SCORERS]
            if all(path.exists() for path in paths):
                reason = why_not_one_base(paths)
                if reason is None:
                    heads = load_adapters_on_one_base(paths, self.device)
                    cfg = RewardBackendConfig(backend="classifier")
                    self._together = ScoresOnOneBase([ClassifierReward(str(path), cfg, self.device, scorer=head)
                                                      for path, head in zip(paths, heads)], label="[playground]")
                    print("[playground] the judge and the reward model: LoRA adapters of one base, loaded once",
                          flush=True)
                else:
                    print(f"[playground] the judge and the reward model load separately ({reason})", flush=True)
        return self._together

    def load_scorers(self) -> None:
        """Load the judge and the reward model now rather than on the first prompt: on one base
        where they share one, else each on its own."""
        if self.scorers_on_one_base() is None:
            for label, _, _ in SCORERS:
                self.scorer(label)

    def score(self, transcript: list[dict], answer: str) -> dict[str, float | None]:
        """Each scorer's score of `answer` to the conversation `transcript` (ending with the user's turn)."""
        together = self.scorers_on_one_base()
        if together is not None:
            return {label: value for (label, _, _), value in zip(SCORERS, together.score([transcript], [answer])[0])}
        scores: dict[str, float | None] = {}
        for label, _, _ in SCORERS:
            scorer = self.scorer(label)
            scores[label] = None if scorer is None else scorer.score([transcript], [answer])[0]
        return scores

    def examples(self, stage: str, count: int = EXAMPLE_COUNT) -> list[str]:
        return held_out_examples(self.config(stage), self.tokenizer(stage), count)

    def turn(self, stage: str, reference_transcript: list[dict], policy_transcript: list[dict], prompt: str,
             sampling: Sampling) -> Iterator[Turn]:
        """One exchange: `prompt` appended to both transcripts, both models answer their own,
        streamed; the last Turn holds the scores. The transcripts are extended in place with the
        prompt and each model's answer once it is complete."""
        reference, policy = self.models(stage)
        tokenizer = self.tokenizer(stage)
        enable_thinking = self.config(stage).model.enable_thinking
        asked = [reference_transcript + [{"role": "user", "content": prompt}],
                 policy_transcript + [{"role": "user", "content": prompt}]]
        theirs = ours = ""
        for theirs, ours in stream_side_by_side((reference, policy), tokenizer, tuple(asked), sampling, enable_thinking):
            yield Turn(theirs, ours)
        done = Turn(theirs, ours, self.score(asked[0], theirs), self.score(asked[1], ours))
        for transcript, question, answer in ((reference_transcript, asked[0], theirs), (policy_transcript, asked[1], ours)):
            transcript[:] = question + [{"role": "assistant", "content": answer}]
        yield done


def format_scores(scores: dict[str, float | None] | None, other: dict[str, float | None] | None = None) -> str:
    """One line of an answer's scores for the page; with `other` (the reference's scores) each
    score is followed by its difference from the reference's."""
    if scores is None:
        return "scoring when both answers are complete"
    parts = []
    for label, _, missing in SCORERS:
        value = scores.get(label)
        if value is None:
            parts.append(missing)
            continue
        text = f"{label} {value:+.3f}"
        if other is not None and other.get(label) is not None:
            text += f" ({value - other[label]:+.3f} vs reference)"
        parts.append(text)
    return " · ".join(parts)


# ----------------------------------------------------------------------------- the page (Gradio)

# How the browser test and bench/playground_latency.py drive the page: the system's Chromium,
# headless. Without the background-networking flags Chromium's own connections get refused on a
# machine without a network, and the page's requests to the local server with them.
CHROMIUM = "/usr/bin/chromium"
HEADLESS_CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# System fonts only: the default theme fetches Google Fonts, and the page must work offline.
_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
_CSS = ".scores { min-height: 1.5em; font-size: 0.95em; }"


def build_app(playground: Playground, default_stage: str | None = None):
    """The Gradio page. Handlers turn errors the user can fix (a stage the run does not hold)
    into a message on the page; the transcripts live in per-session state."""
    gr = import_gradio()
    stage = default_stage or playground.stages[0]
    examples = playground.examples(stage)

    def describe(stage_name: str) -> str:
        try:
            reference, _, why = playground.reference(stage_name)
        except (FileNotFoundError, ValueError) as error:
            return f"**{error}**"
        return (f"Talking to **{stage_name}** ({playground.policy_path(stage_name)}) and to the model it started "
                f"from, **{reference}** ({why}).")

    def labels(stage_name: str) -> tuple[str, str]:
        try:
            reference = playground.reference(stage_name)[0]
        except (FileNotFoundError, ValueError):
            return "reference", f"{stage_name} policy (not in this run)"
        return f"reference: {Path(reference).name} (what {stage_name} started from)", f"trained policy: {stage_name}"

    def send(prompt, stage_name, mode, temperature, max_new_tokens, transcripts):
        reference_transcript, policy_transcript = transcripts
        if not prompt or not prompt.strip():
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), "Type a prompt first.", gr.skip(), gr.skip()
            return
        sampling = Sampling(max_new_tokens=int(max_new_tokens), temperature=0.0 if mode == "greedy" else float(temperature))
        shown = [list(reference_transcript), list(policy_transcript)]
        try:
            for turn in playground.turn(stage_name, reference_transcript, policy_transcript, prompt, sampling):
                chats = [shown[0] + [{"role": "user", "content": prompt}, {"role": "assistant", "content": turn.reference}],
                         shown[1] + [{"role": "user", "content": prompt}, {"role": "assistant", "content": turn.policy}]]
                yield (chats[0], chats[1], format_scores(turn.reference_scores),
                       format_scores(turn.policy_scores, turn.reference_scores), describe(stage_name), "",
                       (reference_transcript, policy_transcript))
        except (FileNotFoundError, ValueError) as error:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), f"**{error}**", gr.skip(), gr.skip()

    def change_stage(stage_name):
        # A new stage is a new conversation: the old transcript was another policy's.
        try:
            playground.models(stage_name)  # load now, not on the first prompt
        except (FileNotFoundError, ValueError):
            pass  # describe() says what is wrong
        reference_label, policy_label = labels(stage_name)
        return (gr.update(value=[], label=reference_label), gr.update(value=[], label=policy_label), "", "",
                describe(stage_name), ([], []))

    with gr.Blocks(title=f"tiller playground: {playground.run_dir}", analytics_enabled=False) as app:
        transcripts = gr.State(([], []))
        gr.Markdown(f"## tiller playground · `{playground.run_dir}`")
        with gr.Row():
            # Every policy stage is listed, the ones this run lacks marked: choosing one says why it cannot talk.
            choices = [(s if s in playground.stages else f"{s} (not in this run)", s) for s in PLAYGROUND_STAGES]
            stage_box = gr.Dropdown(choices, value=stage, label="trained stage", elem_id="stage", scale=1)
            mode = gr.Radio(["greedy", "temperature"], value="greedy", label="sampling", elem_id="mode", scale=1)
            temperature = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label="temperature (when sampling)", scale=1)
            max_new_tokens = gr.Slider(1, 1024, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="max new tokens",
                                       elem_id="max-new-tokens", scale=1)
        status = gr.Markdown(describe(stage), elem_id="status")
        with gr.Row():
            with gr.Column():
                reference_chat = gr.Chatbot(label=labels(stage)[0], elem_id="reference-chat", height=460)
                reference_scores = gr.Markdown("", elem_id="reference-scores", elem_classes="scores")
            with gr.Column():
                policy_chat = gr.Chatbot(label=labels(stage)[1], elem_id="policy-chat", height=460)
                policy_scores = gr.Markdown("", elem_id="policy-scores", elem_classes="scores")
        with gr.Row():
            prompt = gr.Textbox(placeholder="Ask both models something", show_label=False, elem_id="prompt", scale=5,
                                lines=2)
            send_button = gr.Button("Send", variant="primary", elem_id="send", scale=1)
            clear_button = gr.Button("New chat", elem_id="clear", scale=1)
        if examples:
            gr.Examples([[e] for e in examples], inputs=[prompt], label="held-out prompts (click one)")

        outputs = [reference_chat, policy_chat, reference_scores, policy_scores, status, prompt, transcripts]
        inputs = [prompt, stage_box, mode, temperature, max_new_tokens, transcripts]
        send_button.click(send, inputs, outputs)
        prompt.submit(send, inputs, outputs)
        reset_outputs = [reference_chat, policy_chat, reference_scores, policy_scores, status, transcripts]
        stage_box.change(change_stage, [stage_box], reset_outputs)
        for clears in (clear_button.click, reference_chat.clear, policy_chat.clear):  # a chat's own bin too
            clears(change_stage, [stage_box], reset_outputs)
    return app


def free_port(host: str) -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(playground: Playground, host: str = "127.0.0.1", port: int | None = None, stage: str | None = None,
           block: bool = True):
    """Build the page and serve it; returns (app, url). `block=False` returns at once (tests)."""
    gr = import_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    app = build_app(playground, stage)
    port = port or free_port(host)
    app.queue(default_concurrency_limit=1)  # one generation at a time: the models are shared
    app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
               show_error=True, theme=gr.themes.Default(font=_FONTS, font_mono=["ui-monospace", "monospace"]), css=_CSS,
               footer_links=[])
    url = f"http://{host}:{port}/"
    print(f"[playground] serving {playground.run_dir} at {url} (Ctrl+C stops)", flush=True)
    if block:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            app.close()
    return app, url


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int | None = None, stage: str | None = None) -> None:
    """`tiller playground RUN_DIR`: load the default stage's models, then serve until Ctrl+C."""
    import_gradio()  # before loading models: a missing extra should fail in a second, not after
    playground = Playground(run_dir)
    stage = stage or playground.stages[0]
    playground.policy_path(stage)  # a stage the run does not hold: one line, before serving
    if "OMP_NUM_THREADS" not in os.environ:
        # The two answers generate at once, one thread each: half the cores each, not all of them twice.
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    print(f"[playground] loading {stage}, its reference, the judge and the reward model ...", flush=True)
    playground.models(stage)
    playground.load_scorers()
    launch(playground, host, port, stage)
