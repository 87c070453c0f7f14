"""RLOO on the tiny model against a reward served by `tiller serve-reward` over loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import yaml

from tests.conftest import ROOT, write_prompts
from tests.recipes.test_rloo import rloo_config, scores
from tiller.config_loading import config_from_dict
from tiller.recipes import rloo
from tiller.tracking import read_metrics

TOKEN_ENV = "TILLER_TEST_REWARD_TOKEN"


def test_rloo_trains_against_served_reward(tmp_path, tiny_llama, monkeypatch):
    serve_cfg = tmp_path / "serve.yaml"
    serve_cfg.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "server"), "rloo": {"reward": {
        "backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"}}}))
    token = "test-token-123"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", TOKEN_ENV: token}
    proc = subprocess.Popen([sys.executable, "-m", "tiller", "serve-reward", "--config", str(serve_cfg), "--port", "0",
                             "--token-env", TOKEN_ENV], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = None, time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "listening on " in line:
                url = line.strip().split("listening on ", 1)[1]
        assert url, "the reward server did not start"
        monkeypatch.setenv(TOKEN_ENV, token)
        write_prompts(tmp_path)
        cfg = rloo_config(tmp_path, tiny_llama, max_steps=20,
                          reward={"backend": "http", "url": url, "api_key_env": TOKEN_ENV, "batch_size": 8})
        rloo.run(config_from_dict(cfg))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    curve = scores(tmp_path)
    assert len(curve) == 20
    assert sum(curve[-5:]) / 5 > sum(curve[:5]) / 5 + 0.03, curve
    last = read_metrics(tmp_path / "rloo" / "metrics.jsonl")[-1]
    assert last["reward/http_failures"] == 0
