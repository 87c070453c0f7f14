"""First-token latency of `tiller playground`, measured in a real browser, and a screenshot.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/playground_latency.py runs/trial-b \\
        --prompts 5 --screenshot docs/playground.png

Serves the playground of RUN_DIR (its first trained stage, greedy, the page's default token
limit), opens it in headless Chromium (/usr/bin/chromium through Playwright), and for each of
the run's first held-out prompts starts a new chat, types the prompt and clicks Send. The page
itself records the times (performance.now()): the click, and the moment each side's answer
first shows text (a MutationObserver); the answer's end is when its scores appear. One warm-up
prompt first (the first forward pass of a fresh process is slower), not counted. Prints each
prompt's times and the medians; with --screenshot, saves the page after a two-turn chat.
Needs the playground extra and playwright (`make test` installs both).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tiller.playground import CHROMIUM, HEADLESS_CHROMIUM_ARGS, Playground, launch, stream_side_by_side  # noqa: E402
from tiller.rollout import Sampling  # noqa: E402

# Records, in the page, when Send is clicked (capture phase: before Gradio's own handler) and when
# each side's answer first holds text.
RECORD_TIMES = """
window.__times = {};
document.querySelector('#send').addEventListener('click', () => { window.__times = {sent: performance.now()}; }, true);
new MutationObserver(() => {
  for (const side of ['reference', 'policy']) {
    const answer = document.querySelector(`#${side}-chat [data-testid="bot"]`);
    if (answer && answer.innerText.trim() && !window.__times[side]) window.__times[side] = performance.now();
  }
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""
WAIT_MS = 300_000


def ask(page, prompt: str) -> dict[str, float]:
    """Send `prompt` and wait for both answers' scores; seconds from the click to each side's first text."""
    answers = page.locator('#policy-chat [data-testid="bot"]').count()
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#send").click()
    # Done when the new answer is there and scored (the previous turn's scores stay until the first update).
    done = (f"document.querySelectorAll('#policy-chat [data-testid=\"bot\"]').length == {answers + 1} && "
            "['reference', 'policy'].every(s => document.querySelector(`#${s}-scores`).innerText.includes('judge'))")
    page.wait_for_function(done, timeout=WAIT_MS)
    times = page.evaluate("window.__times")
    return {side: (times[side] - times["sent"]) / 1000 for side in ("reference", "policy")}


def first_text_in_process(playground: Playground, stage: str, prompt: str) -> dict[str, float]:
    """The same without page or server: seconds from the call to each side's first text."""
    reference, policy = playground.models(stage)
    asked = [{"role": "user", "content": prompt}]
    started, times = time.perf_counter(), {}
    # Two tokens are enough to see the first text; the generation threads end on their own.
    for answers in stream_side_by_side((reference, policy), playground.tokenizer(stage), (asked, asked),
                                       Sampling(max_new_tokens=2, temperature=0.0)):
        for side, text in zip(("reference", "policy"), answers):
            if text.strip() and side not in times:
                times[side] = time.perf_counter() - started
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--screenshot", help="save a screenshot of the page here (PNG)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    playground = Playground(args.run_dir)
    stage = playground.stages[0]
    loading = time.perf_counter()
    playground.models(stage)
    print(f"loaded {stage} and its reference in {time.perf_counter() - loading:.1f} s", flush=True)
    prompts = playground.examples(stage, count=args.prompts + 1)
    app, url = launch(playground, stage=stage, block=False)
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=HEADLESS_CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator("#send").wait_for()
        page.evaluate(RECORD_TIMES)
        for i, prompt in enumerate(prompts):
            page.locator("#clear").click()
            page.wait_for_function("!document.querySelector('#policy-scores').innerText.trim()")
            times = ask(page, prompt)
            label = "warm-up" if i == 0 else f"prompt {i}"
            print(f"{label}: first text {times['reference']:.2f} s (reference), {times['policy']:.2f} s (policy)  "
                  f"{prompt[:60]!r}", flush=True)
            if i:
                rows.append(times)
        for side in ("reference", "policy"):
            print(f"median over {len(rows)} prompts, {side}: {statistics.median(r[side] for r in rows):.2f} s")
        print(f"median of the later side (both answers streaming): {statistics.median(max(r.values()) for r in rows):.2f} s")
        direct = [first_text_in_process(playground, stage, prompt) for prompt in prompts[1:]]
        print("without the page (stream_side_by_side in this process), medians: " + ", ".join(
            f"{side} {statistics.median(r.get(side, float('nan')) for r in direct):.2f} s" for side in ("reference", "policy")))
        if args.screenshot:
            page.locator("#clear").click()
            page.wait_for_function("!document.querySelector('#policy-scores').innerText.trim()")
            ask(page, prompts[0])
            ask(page, "Thanks! Can you say that in one sentence?")
            page.screenshot(path=args.screenshot, full_page=True)
            print(f"screenshot: {args.screenshot}")
        browser.close()
    app.close()


if __name__ == "__main__":
    main()
