"""The playground page in a real browser: headless Chromium (the system's /usr/bin/chromium,
driven by Playwright) loads the page of a tiny run, types a prompt, clicks Send, and must see
both answers and both models' scores; then picks a stage the run lacks and must see why.

Skipped, with the reason, when gradio, playwright or Chromium is missing; with
TILLER_REQUIRE_BROWSER=1 (`make test`) that is a failure instead."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from tests.helpers.playground_run import HELD_OUT_QUESTIONS, build_tiny_run
from tiller.playground import (CHROMIUM, DEFAULT_MAX_NEW_TOKENS, HEADLESS_CHROMIUM_ARGS, Playground, format_scores,
                               launch)
from tiller.rollout import Sampling

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("one_thread")]

WAIT_MS = 30_000  # an answer of the tiny models takes about a second; a loaded machine, much more
SCORE = r"[+-]\d+\.\d{3}"


def require_browser() -> None:
    missing = [name for name, present in (("gradio", importlib.util.find_spec("gradio")),
                                          ("playwright", importlib.util.find_spec("playwright")),
                                          (CHROMIUM, Path(CHROMIUM).exists())) if not present]
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (`make test` installs them)"
        if os.environ.get("TILLER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TILLER_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_browser()
    run_dir, _ = build_tiny_run(tmp_path_factory.mktemp("playground-browser"))
    playground = Playground(run_dir)
    app, url = launch(playground, block=False)
    yield playground, url
    app.close()


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=HEADLESS_CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served[1])
        yield page
        browser.close()


def test_a_prompt_gets_both_answers_and_their_scores_on_the_page(served, page):
    from playwright.sync_api import expect

    playground, _ = served
    prompt = HELD_OUT_QUESTIONS[0]
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#send").click()
    for side in ("reference", "policy"):
        answer = page.locator(f'#{side}-chat [data-testid="bot"]')
        expect(answer).to_have_count(1, timeout=WAIT_MS)
        expect(answer).not_to_have_text(re.compile(r"^\s*$"), timeout=WAIT_MS)
    expect(page.locator("#reference-scores")).to_have_text(re.compile(f"judge {SCORE} · reward model {SCORE}"),
                                                           timeout=WAIT_MS)
    expect(page.locator("#policy-scores")).to_have_text(
        re.compile(f"judge {SCORE} \\({SCORE} vs reference\\) · reward model {SCORE}"), timeout=WAIT_MS)

    # The page shows the scores of the answers the models give (greedy: the same answers again).
    done = list(playground.turn(playground.stages[0], [], [], prompt, Sampling(DEFAULT_MAX_NEW_TOKENS, 0.0)))[-1]
    assert page.locator("#reference-scores").inner_text().strip() == format_scores(done.reference_scores)
    assert page.locator("#policy-scores").inner_text().strip() == format_scores(done.policy_scores,
                                                                                done.reference_scores)
    assert page.locator("#prompt textarea").input_value() == ""  # ready for the next turn


def test_a_stage_the_run_lacks_is_a_message_on_the_page(served, page):
    from playwright.sync_api import expect

    page.locator("#stage input").click()
    page.get_by_role("option", name="dpo (not in this run)").click()
    expect(page.locator("#status")).to_contain_text("this run has no trained dpo policy", timeout=WAIT_MS)
    expect(page.locator("#status")).to_contain_text("it has: rloo")
