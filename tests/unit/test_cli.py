"""The command line fails like a tool: a user's mistake is one line on stderr naming what to do,
exit status 2, no traceback (TILLER_DEBUG=1 shows it); at start a short summary, not the whole
resolved config, which goes to the stage folder instead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiller import cli
from tiller.config import to_dict
from tiller.config_loading import load_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, stage: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tiller {stage}: error: "), err
    return lines[0]


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    from tiller.tiny import build_tokenizer

    folder = tmp_path / "tok"
    build_tokenizer().save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def data_config(tmp_path: Path, tiny_dir: Path, rows: str) -> Path:
    (tmp_path / "train.jsonl").write_text(rows)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"),
        "model": {"name": str(tiny_dir)},
        "data": {"source": "local", "files": {"train": str(tmp_path / "train.jsonl")}, "splits": ["train"]},
    }))
    return path


HS3 = {"domain": "general", "language": "english", "context": [{"role": "user", "content": "Hi?"}],
       "response1": "Hello.", "response2": "Go away.", "overall_preference": -2}


def test_report_on_a_missing_folder_is_one_line(tmp_path, capsys):
    rc, out, err = run_main(["report", str(tmp_path / "nope")], capsys)
    assert rc == 2 and out == ""
    assert "nope is not a run folder (no such directory)" in one_line_error(err, "report")


@pytest.mark.parametrize("argv, stage", [(["rloo"], "rloo"), (["eval", "policy"], "eval policy"), (["data"], "data")])
def test_missing_config_is_one_line_naming_the_flag(argv, stage, capsys, monkeypatch):
    monkeypatch.delenv("TILLER_QUIET_CONFIG", raising=False)
    rc, out, err = run_main(argv, capsys)
    assert rc == 2 and out == ""  # nothing printed before the error: no config dump, no work
    line = one_line_error(err, stage)
    assert "--config FILE is required" in line and f"`tiller {stage} --config configs/demo.yaml`" in line


def test_config_errors_are_one_line(tmp_path, capsys):
    rc, _, err = run_main(["rloo", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert rc == 2 and "config file not found" in one_line_error(err, "rloo")
    rc, _, err = run_main(["reward", "--config", DEMO, "--set", "rloo.bta=1"], capsys)
    assert rc == 2 and "did you mean 'rloo.beta'?" in one_line_error(err, "reward")


def test_stage_error_comes_right_after_a_short_summary(tmp_path, capsys, monkeypatch):
    """`tiller rloo` before `tiller data`: the one-line error used to follow a 270-line dump."""
    monkeypatch.delenv("TILLER_QUIET_CONFIG", raising=False)
    from tiller.data.run_files import load_prompts

    def rloo_reading_its_prompts(cfg, resume, **kwargs):  # what rloo.run meets, without loading the embedded model first
        load_prompts(cfg.run_dir, "train")

    monkeypatch.setattr("tiller.recipes.rloo.run", rloo_reading_its_prompts)
    run_dir = tmp_path / "run"
    rc, out, err = run_main(["rloo", "--config", DEMO, "--set", f"run_dir={run_dir}"], capsys)
    assert rc == 2
    assert "no finished data stage" in one_line_error(err, "rloo") and "run `tiller data" in err
    lines = out.splitlines()
    assert len(lines) <= 6, out
    assert lines[0] == f"# config {DEMO} with 1 --set"
    assert f"run_dir={run_dir}" in out and "model.name=embedded" in out and "rloo.prompts_per_step=4" in out
    assert lines[-1] == f"  (full resolved config: {run_dir / 'rloo' / 'config.yaml'})"
    assert "sft:" not in out and "tracking:" not in out  # not the YAML dump


def test_quiet_config_silences_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TILLER_QUIET_CONFIG", "1")
    monkeypatch.setattr("tiller.recipes.rloo.run", lambda cfg, resume, **kwargs: None)
    rc, out, err = run_main(["rloo", "--config", DEMO], capsys)
    assert (rc, out, err) == (0, "", "")


def test_print_config_prints_the_resolved_config_and_runs_nothing(capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("--print-config must not run the stage")

    monkeypatch.setattr("tiller.recipes.rloo.run", fail)
    rc, out, _ = run_main(["rloo", "--config", DEMO, "--set", "rloo.beta=0.25", "--print-config"], capsys)
    assert rc == 0
    assert yaml.safe_load(out) == to_dict(load_config(DEMO, ["rloo.beta=0.25"]))


def test_data_error_is_one_line_naming_file_line_and_field(tmp_path, tiny_dir, capsys, monkeypatch):
    monkeypatch.delenv("TILLER_QUIET_CONFIG", raising=False)
    bad = dict(HS3, overall_preference=float("nan"))
    cfg = data_config(tmp_path, tiny_dir, json.dumps(HS3) + "\n" + json.dumps(bad) + "\n")
    rc, out, err = run_main(["data", "--config", str(cfg)], capsys)
    assert rc == 2
    line = one_line_error(err, "data")
    assert f"{tmp_path / 'train.jsonl'} line 2: field 'overall_preference'" in line
    assert not (tmp_path / "run" / "data" / "DONE").exists()
    # the resolved config is in the stage folder even when the stage fails
    assert load_config(tmp_path / "run" / "data" / "config.yaml") == load_config(cfg)


def test_data_stage_writes_its_resolved_config(tmp_path, tiny_dir, capsys, monkeypatch):
    monkeypatch.delenv("TILLER_QUIET_CONFIG", raising=False)
    cfg = data_config(tmp_path, tiny_dir, json.dumps(HS3) + "\n")
    rc, out, err = run_main(["data", "--config", str(cfg), "--set", "data.max_prompt_tokens=500"], capsys)
    assert rc == 0 and err == ""
    written = tmp_path / "run" / "data" / "config.yaml"
    assert f"(full resolved config: {written})" in out and "data.max_prompt_tokens=500" in out
    assert load_config(written) == load_config(cfg, ["data.max_prompt_tokens=500"])


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("TILLER_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        cli.main(["report", str(tmp_path / "nope")])


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only user errors are shortened: anything else propagates (exit 1, with the traceback)."""
    def bug(cfg, resume, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr("tiller.recipes.rloo.run", bug)
    with pytest.raises(KeyError, match="internal"):
        cli.main(["rloo", "--config", DEMO])


def test_pipeline_failure_is_user_error_only_when_its_cause_is():
    from tiller.recipes.pipeline import PipelineError

    def wrapped(cause: Exception) -> PipelineError:
        try:
            try:
                raise cause
            except Exception as e:
                raise PipelineError("stage 'x' failed\nfinished stages are intact") from e
        except PipelineError as p:
            return p

    assert cli._is_user_error(wrapped(ValueError("bad value")))
    assert cli._is_user_error(wrapped(FileNotFoundError("no file")))
    assert not cli._is_user_error(wrapped(RuntimeError("CUDA error")))


def test_as_a_process_no_traceback_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tiller", "report", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"tiller report: error: {tmp_path / 'nope'} is not a run folder (no such directory)"


def test_eval_curve_parses_with_and_without_a_stage(capsys):
    parse = cli.build_parser().parse_args
    args = parse(["eval", "curve", "--config", "c.yaml", "--stage", "dpo"])
    assert (args.stage, args.what, args.policy_stage, args.config) == ("eval", "curve", "dpo", "c.yaml")
    assert parse(["eval", "curve", "--config", "c.yaml"]).policy_stage is None  # each stage with a model
    from tiller.recipes import evaluate

    # cli.py writes the curve's stages out (no torch import to parse): every one of them parses.
    assert [parse(["eval", "curve", "--config", "c.yaml", "--stage", s]).policy_stage
            for s in evaluate.POLICY_STAGES] == list(evaluate.POLICY_STAGES)
    with pytest.raises(SystemExit) as e:
        parse(["eval", "curve", "--config", "c.yaml", "--stage", "sft"])  # not a policy stage with checkpoints
    assert e.value.code == 2 and "invalid choice: 'sft'" in capsys.readouterr().err


def test_eval_curve_runs_the_curve_of_the_stage_asked_for(tmp_path, capsys, monkeypatch):
    from tiller.recipes import evaluate

    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run")}))
    calls = []
    monkeypatch.setattr(evaluate, "run_curve", lambda cfg, stage=None: calls.append((cfg.run_dir, stage)))
    assert cli.main(["eval", "curve", "--config", str(config), "--stage", "rloo"]) == 0
    assert calls == [(str(tmp_path / "run"), "rloo")]
    monkeypatch.undo()
    # nothing trained in the run folder: one line saying so
    rc, out, err = run_main(["eval", "curve", "--config", str(config)], capsys)
    assert rc == 2
    assert "no policy stage to curve in" in one_line_error(err, "eval curve")
