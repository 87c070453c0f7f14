"""Tests for tiller.data and the data stage: adapters on rows in the real schemas, filter counts,
every bad-input error, skip mode, and the stage end to end on the bundled sample, checked
against counts taken from the raw file with plain json."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from tiller.config import Config, DataConfig, ModelConfig
from tiller.data import (
    Conversation,
    DataError,
    PreferencePair,
    Prompt,
    conversation_prompt,
    get_adapter,
    open_file,
    open_split,
    sample_path,
)
from tiller.data import run_files
from tiller.data.adapters import hh_rlhf, helpsteer3, messages, ultrafeedback
from tiller.data.filters import prompt_token_counts
from tiller.recipes import data as data_stage

WHERE = "f.jsonl line 1"


def hs3_row(pref=-2, language="english", domain="general", context=None, r1="Answer one.", r2="Answer two."):
    return {
        "domain": domain,
        "language": language,
        "context": context or [{"role": "user", "content": "What is the capital of France?"}],
        "response1": r1,
        "response2": r2,
        "overall_preference": pref,
        "individual_preference": [{"score": pref, "reasoning": "because"}],
    }


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def local_cfg(path: Path, **kw) -> DataConfig:
    kw.setdefault("max_prompt_tokens", 100_000)
    return DataConfig(source="local", files={"train": str(path)}, splits=["train"], **kw)


# ----------------------------------------------------------------------------- adapters


def test_helpsteer3_multi_turn_signs_margin_and_tie():
    context = [
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "Leaves fall..."},
        {"role": "user", "content": "Now one about snow."},
    ]
    neg = helpsteer3(hs3_row(-3, context=context), WHERE, 7)
    assert isinstance(neg, PreferencePair)
    assert neg.prompt == context  # all turns kept, in order
    assert (neg.chosen, neg.rejected, neg.margin) == ("Answer one.", "Answer two.", 3.0)
    assert (neg.domain, neg.language, neg.source_row) == ("general", "english", 7)
    pos = helpsteer3(hs3_row(1, domain="stem"), WHERE)
    assert (pos.chosen, pos.rejected, pos.margin, pos.domain) == ("Answer two.", "Answer one.", 1.0, "stem")
    tie = helpsteer3(hs3_row(0, context=context), WHERE, 3)
    assert isinstance(tie, Prompt) and tie.messages == context and tie.source_row == 3
    # Extra keys in messages are not carried into the records.
    row = hs3_row(2, context=[{"role": "user", "content": "hi", "extra": 1}])
    assert helpsteer3(row, WHERE).prompt == [{"role": "user", "content": "hi"}]


def test_helpsteer3_record_round_trip():
    pair = helpsteer3(hs3_row(-1), WHERE, 1)
    assert PreferencePair.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair


def test_ultrafeedback_pairs_margin_and_ties():
    row = {
        "prompt": "How do I boil an egg?",
        "chosen": [{"role": "user", "content": "How do I boil an egg?"}, {"role": "assistant", "content": "Boil it 8 minutes."}],
        "rejected": [{"role": "user", "content": "How do I boil an egg?"}, {"role": "assistant", "content": "Fry it."}],
        "score_chosen": 8.5,
        "score_rejected": 6.0,
    }
    pair = ultrafeedback(row, WHERE, 4)
    assert pair.prompt == [{"role": "user", "content": "How do I boil an egg?"}]
    assert (pair.chosen, pair.rejected, pair.margin, pair.source_row) == ("Boil it 8 minutes.", "Fry it.", 2.5, 4)
    no_scores = {k: v for k, v in row.items() if not k.startswith("score")}
    assert ultrafeedback(no_scores, WHERE).margin == 0.0
    assert isinstance(ultrafeedback({**row, "score_rejected": 8.5}, WHERE), Prompt)
    with pytest.raises(DataError, match="score_chosen"):
        ultrafeedback({**row, "score_rejected": 9.0}, WHERE)
    only_answers = {**row, "chosen": row["chosen"][1:], "rejected": row["rejected"][1:]}
    assert ultrafeedback(only_answers, WHERE).prompt == [{"role": "user", "content": "How do I boil an egg?"}]
    other_prompt = {**row, "rejected": [{"role": "user", "content": "Other?"}, row["rejected"][1]]}
    with pytest.raises(DataError, match="'rejected'.*differ"):
        ultrafeedback(other_prompt, WHERE)


def test_hh_rlhf_splits_at_last_assistant_turn():
    prefix = "\n\nHuman: Hi, can you help me cook?\n\nAssistant: Sure, what dish?\n\nHuman: Pasta carbonara."
    row = {"chosen": prefix + "\n\nAssistant: Use eggs, pecorino and guanciale.", "rejected": prefix + "\n\nAssistant: No."}
    pair = hh_rlhf(row, WHERE, 2)
    assert pair.prompt == [
        {"role": "user", "content": "Hi, can you help me cook?"},
        {"role": "assistant", "content": "Sure, what dish?"},
        {"role": "user", "content": "Pasta carbonara."},
    ]
    assert (pair.chosen, pair.rejected, pair.source_row) == ("Use eggs, pecorino and guanciale.", "No.", 2)
    bad = {"chosen": row["chosen"], "rejected": "\n\nHuman: Something else\n\nAssistant: No."}
    with pytest.raises(DataError, match="field 'rejected'.*differ"):
        hh_rlhf(bad, WHERE)
    with pytest.raises(DataError, match="empty response"):
        hh_rlhf({"chosen": row["chosen"], "rejected": prefix + "\n\nAssistant:  "}, WHERE)
    with pytest.raises(DataError, match="ends with a Human turn"):
        hh_rlhf({"chosen": row["chosen"] + "\n\nHuman: more?", "rejected": row["rejected"]}, WHERE)


def test_messages_conversation_and_prompt():
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    conv = messages({"messages": msgs, "source": "smol"}, WHERE, 5)
    assert isinstance(conv, Conversation) and conv.messages == msgs and conv.source_row == 5
    assert conversation_prompt(conv.messages) == msgs[:4]
    with pytest.raises(DataError, match="last message must be the assistant"):
        messages({"messages": msgs[:4]}, WHERE)


def test_unknown_format_lists_valid_ones():
    with pytest.raises(DataError) as e:
        get_adapter("alpaca")
    assert "alpaca" in str(e.value)
    for name in ("helpsteer3", "ultrafeedback", "hh_rlhf", "messages"):
        assert name in str(e.value)


@pytest.mark.parametrize(
    "row, field, words",
    [
        ({k: v for k, v in hs3_row().items() if k != "response2"}, "response2", "missing"),
        (hs3_row(pref="2"), "overall_preference", "integer in -3..3"),
        (hs3_row(pref=5), "overall_preference", "integer in -3..3"),
        (hs3_row(pref=True), "overall_preference", "integer in -3..3"),
        (hs3_row(r1="   "), "response1", "empty response"),
        (hs3_row(r2=17), "response2", "expected a string"),
        ({**hs3_row(), "context": "hello"}, "context", "expected a list"),
        (hs3_row(context=[{"role": "bot", "content": "x"}]), "context[0].role", "bad role 'bot'"),
        (hs3_row(context=[{"role": "user", "content": None}]), "context[0].content", "expected a string"),
        (hs3_row(context=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]), "context[1].role", "last prompt turn"),
        ({**hs3_row(), "language": 3}, "language", "expected a string or null"),
    ],
)
def test_helpsteer3_bad_rows_name_the_field(row, field, words):
    with pytest.raises(DataError) as e:
        helpsteer3(row, "data/train.jsonl line 12")
    msg = str(e.value)
    assert "data/train.jsonl line 12" in msg and f"field '{field}'" in msg and words in msg
    assert e.value.field == field


# ----------------------------------------------------------------------------- sources


def test_malformed_json_line_names_file_and_line(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "broken.jsonl", [hs3_row(), hs3_row(1), '{"context": [', hs3_row(2)])
    with pytest.raises(DataError) as e:
        data_stage.prepare_split(local_cfg(path), "train", tokenizer)
    assert "broken.jsonl line 3" in str(e.value) and "not valid JSON" in str(e.value)


def test_missing_field_error_through_the_stage(tmp_path, tokenizer):
    row = hs3_row()
    del row["context"]
    path = write_jsonl(tmp_path / "t.jsonl", [hs3_row(), "", row])  # a blank line still counts as a line
    with pytest.raises(DataError, match=r"t\.jsonl line 3: field 'context': missing"):
        data_stage.prepare_split(local_cfg(path), "train", tokenizer)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="file not found.*nope.jsonl"):
        open_file(tmp_path / "nope.jsonl", key="data.files.train")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        open_file(tmp_path / "x.csv")


def test_unknown_format_through_the_stage(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", [hs3_row()])
    cfg = local_cfg(path)
    cfg.format = "alpaca"  # bypasses config validation, as a programmatic caller could
    with pytest.raises(DataError, match="valid formats: helpsteer3, ultrafeedback, hh_rlhf, messages"):
        data_stage.prepare_split(cfg, "train", tokenizer)


def test_json_list_and_parquet_sources(tmp_path, tokenizer):
    rows = [hs3_row(-1), hs3_row(0), hs3_row(2, language="German", domain="multilingual")]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    write_jsonl(tmp_path / "lines.json", rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    for name, unit in (("list.json", "row 0"), ("lines.json", "line 1"), ("t.parquet", "row 0")):
        src = open_file(tmp_path / name)
        got = list(src.rows())
        assert [r for _, r in got] == rows, name
        assert src.where(got[0][0]).endswith(unit)
        out = data_stage.prepare_split(local_cfg(tmp_path / name), "train", tokenizer)
        assert (out.stats.pairs_kept, out.stats.ties, out.stats.dropped["language"]) == (1, 1, 1)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"a": 1},\n {"b": ]')
    with pytest.raises(DataError, match="bad.json line 2"):
        list(open_file(bad).rows())


def test_hub_source_through_datasets_offline(tmp_path, tokenizer, monkeypatch):
    """The hub path, without a network: `datasets.load_dataset` also takes a local folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = tmp_path / "my-dataset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [hs3_row(-1), hs3_row(0), hs3_row(3)])
    cfg = DataConfig(source="hub", hub_id=str(folder), splits=["train"])
    out = data_stage.prepare_split(cfg, "train", tokenizer)
    assert out.stats.source == f"{folder}:train"
    assert (out.stats.rows_read, out.stats.pairs_kept, out.stats.ties) == (3, 2, 1)
    assert [p.source_row for p in out.pairs] == [0, 2]  # 0-based rows, as datasets counts


def test_sample_source_errors():
    with pytest.raises(DataError, match="no split 'test'"):
        open_split(DataConfig(source="sample"), "test")
    with pytest.raises(DataError, match="sample 'helpsteer3' is in 'helpsteer3' format; set data.format: helpsteer3"):
        open_split(DataConfig(source="sample", format="messages"), "train")
    with pytest.raises(DataError, match="sample 'arithmetic' is in 'messages' format; set data.format: messages"):
        open_split(DataConfig(source="sample", sample="arithmetic"), "train")
    with pytest.raises(DataError, match="sample 'arithmetic' has no split 'test' \\(it has: train, validation\\)"):
        open_split(DataConfig(source="sample", sample="arithmetic", format="messages"), "test")


# ----------------------------------------------------------------------------- filters and counts


def test_language_filter_is_case_insensitive_and_counts(tmp_path, tokenizer):
    rows = [
        hs3_row(-1, language="English"),
        hs3_row(1, language="ENGLISH"),
        hs3_row(0, language="english"),  # tie: dropped from pairs, prompt kept for RL
        hs3_row(2, language="python", domain="code"),
        hs3_row(2, language="German", domain="multilingual"),
        {**hs3_row(3), "language": None},  # no language: dropped as `language` when a list is set
    ]
    rows = [{**r, "context": [{"role": "user", "content": f"question {i}"}]} for i, r in enumerate(rows)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    out = data_stage.prepare_split(local_cfg(path, languages=["eNgLiSh"]), "train", tokenizer)
    s = out.stats
    assert (s.rows_read, s.pairs_kept, s.ties, s.prompts_kept) == (6, 2, 1, 3)
    assert dict(s.dropped) == {"language": 3, "tie": 1}
    assert s.languages_read == {"English": 1, "ENGLISH": 1, "english": 1, "python": 1, "German": 1, "(none)": 1}
    assert [p.source_row for p in out.pairs] == [1, 2]
    assert [c.messages[-1]["content"] for c in out.conversations] == [p.chosen for p in out.pairs]
    keep_all = data_stage.prepare_split(local_cfg(path, languages=[]), "train", tokenizer).stats
    assert (keep_all.pairs_kept, dict(keep_all.dropped)) == (5, {"tie": 1})
    code_only = data_stage.prepare_split(local_cfg(path, languages=[], domains=["Code"]), "train", tokenizer).stats
    assert (code_only.pairs_kept, dict(code_only.dropped)) == (1, {"domain": 5})


def test_prompt_too_long_is_dropped_not_truncated(tmp_path, tokenizer):
    short = [{"role": "user", "content": "Hi."}]
    long = [{"role": "user", "content": "Please explain photosynthesis in detail. " * 40}]
    n_short, n_long = (len(tokenizer.apply_chat_template(m, tokenize=True, add_generation_prompt=True, return_dict=False)) for m in (short, long))
    assert prompt_token_counts(tokenizer, [short, long, short]) == [n_short, n_long, n_short]

    class SlowTokenizer:  # no Rust backend: the plain tokenizer(list) path must agree
        def __call__(self, *args, **kwargs):
            return tokenizer(*args, **kwargs)

        def apply_chat_template(self, *args, **kwargs):
            return tokenizer.apply_chat_template(*args, **kwargs)

    assert prompt_token_counts(SlowTokenizer(), [short, long], batch_size=1) == [n_short, n_long]
    rows = [hs3_row(-1, context=short), hs3_row(2, context=long), hs3_row(0, context=long)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    out = data_stage.prepare_split(local_cfg(path, max_prompt_tokens=n_long - 1), "train", tokenizer)
    assert (out.stats.pairs_kept, dict(out.stats.dropped)) == (1, {"prompt_too_long": 2})
    assert out.pairs[0].prompt == short and [p.messages for p in out.prompts] == [short]
    at_limit = data_stage.prepare_split(local_cfg(path, max_prompt_tokens=n_long), "train", tokenizer)
    assert at_limit.pairs[1].prompt == long  # kept whole at exactly the limit


def test_dedupe_prompts_counts_duplicates(tmp_path, tokenizer):
    a = [{"role": "user", "content": "Same question"}]
    b = [{"role": "user", "content": "Other question"}]
    rows = [hs3_row(-1, context=a), hs3_row(2, context=a), hs3_row(0, context=a), hs3_row(1, context=b)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    out = data_stage.prepare_split(local_cfg(path), "train", tokenizer)
    assert out.stats.pairs_kept == 3  # pairs keep their duplicates: each is its own signal
    assert [p.messages for p in out.prompts] == [a, b]
    assert [p.source_row for p in out.prompts] == [1, 4]
    assert dict(out.stats.prompts_dropped) == {"duplicate_prompt": 2}
    no_dedupe = data_stage.prepare_split(local_cfg(path, dedupe_prompts=False), "train", tokenizer)
    assert no_dedupe.stats.prompts_kept == 4


def test_messages_format_gives_conversations_and_prompts(tmp_path, tokenizer):
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": conv}, {"messages": conv}])
    out = data_stage.prepare_split(local_cfg(path, format="messages", languages=[]), "train", tokenizer)
    assert (out.stats.pairs_kept, out.stats.conversations_kept, out.stats.prompts_kept) == (0, 2, 1)
    assert out.prompts[0].messages == conv[:1]
    # The default data.languages: [english] keeps nothing of rows without a language field: an
    # error that names the filter and the fix, not an empty output.
    with pytest.raises(DataError, match=r"every valid row \(2\) was dropped by the language filter.*set data.languages: \[\]"):
        data_stage.prepare_split(local_cfg(path, format="messages"), "train", tokenizer)


def test_skip_mode_counts_bad_rows_and_warns_once(tmp_path, tokenizer):
    no_ctx = hs3_row()
    del no_ctx["context"]
    rows = [hs3_row(-1), "not json", hs3_row(r1=""), hs3_row(r2=""), no_ctx, hs3_row(pref=9), "[1, 2]", hs3_row(1)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = data_stage.prepare_split(local_cfg(path, on_bad_row="skip"), "train", tokenizer)
    skip_warnings = [w for w in caught if "skipping bad rows" in str(w.message)]
    assert len(skip_warnings) == 1 and "t.jsonl line 2" in str(skip_warnings[0].message)
    s = out.stats
    assert (s.rows_read, s.pairs_kept) == (8, 2)
    assert dict(s.dropped) == {
        "bad_row:json": 2,
        "bad_row:response1": 1,
        "bad_row:response2": 1,
        "bad_row:context": 1,
        "bad_row:overall_preference": 1,
    }
    assert [p.source_row for p in out.pairs] == [1, 8]


def test_max_rows_per_split(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", [hs3_row(i % 3 - 1) for i in range(10)])
    out = data_stage.prepare_split(local_cfg(path, max_rows_per_split=4), "train", tokenizer)
    assert out.stats.rows_read == 4


# ----------------------------------------------------------------------------- the stage end to end


def parse_table(text: str) -> dict[str, list[int]]:
    """Label -> numbers per split, from the printed table. An indented label is keyed
    "section/label" after the unindented line above it ("rows dropped/language")."""
    out, section = {}, ""
    for line in text.splitlines():
        parts = line.rstrip().rsplit(None, 2)
        numeric = len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit()
        if numeric:
            label = parts[0].strip()
            out[f"{section}/{label}" if line.startswith("  ") else label] = [int(parts[1]), int(parts[2])]
        if line.strip() and not line.startswith((" ", "-")):
            section = parts[0].strip() if numeric else line.strip()
    return out


def test_load_before_run_says_run_data_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="tiller data"):
        run_files.load_pairs(tmp_path, "train")


def test_failed_rerun_removes_done_and_leaves_no_temp_files(tmp_path, tiny_dir, capsys):
    tie_context = [{"role": "user", "content": "Is this a tie?"}]
    good = write_jsonl(tmp_path / "good.jsonl", [hs3_row(-1), hs3_row(0, context=tie_context)])
    cfg = Config(run_dir=str(tmp_path / "run"), model=ModelConfig(name=str(tiny_dir)), data=local_cfg(good))
    summary = data_stage.run(cfg)
    out = tmp_path / "run" / "data"
    assert (out / "DONE").is_file() and summary["splits"]["train"]["pairs_kept"] == 1
    assert run_files.load_pairs(cfg.run_dir, "train")[0].chosen == "Answer one."
    assert run_files.load_prompts(cfg.run_dir, "train")[1].messages == tie_context  # a tie's prompt serves RL
    cfg.data.files = {"train": str(write_jsonl(tmp_path / "bad.jsonl", [hs3_row(-1), "{oops"]))}
    with pytest.raises(DataError, match=r"bad\.jsonl line 2"):
        data_stage.run(cfg)
    assert not (out / "DONE").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(FileNotFoundError, match="run `tiller data"):
        run_files.load_pairs(cfg.run_dir, "train")


def test_stage_on_bundled_sample_matches_hand_count(tmp_path, tiny_dir, tokenizer, capsys):
    # Hand count from the raw files, with plain json and the tokenizer called directly.
    def prompt_tokens(row: dict) -> int:
        return len(tokenizer.apply_chat_template(row["context"], tokenize=True, add_generation_prompt=True, return_dict=False))

    raw = {s: [json.loads(line) for line in sample_path(s).read_text().splitlines() if line.strip()] for s in ("train", "validation")}
    # A prompt limit at the median english train prompt, so that `prompt_too_long` is exercised.
    lengths = sorted(prompt_tokens(r) for r in raw["train"] if r["language"].lower() == "english")
    max_prompt_tokens = lengths[len(lengths) // 2]

    cfg = Config(run_dir=str(tmp_path / "run"), model=ModelConfig(name=str(tiny_dir)))
    cfg.data.max_prompt_tokens = max_prompt_tokens
    summary = data_stage.run(cfg)
    table = parse_table(capsys.readouterr().out)

    expect: dict[str, list[int]] = {}
    for split in ("train", "validation"):
        rows = raw[split]
        english = [r for r in rows if (r.get("language") or "").lower() == "english"]
        fits = [r for r in english if prompt_tokens(r) <= max_prompt_tokens]
        pairs = [r for r in fits if r["overall_preference"] != 0]
        prompts = {json.dumps(r["context"]) for r in fits}
        counts = {
            "rows read": len(rows),
            "pairs kept": len(pairs),
            "RL prompts kept": len(prompts),
            "RL prompts dropped/duplicate_prompt": len(fits) - len(prompts),
            "ties (of rows read)": sum(r["overall_preference"] == 0 for r in rows),
            "rows dropped/language": len(rows) - len(english),
            "rows dropped/tie": len(fits) - len(pairs),
            "rows dropped/prompt_too_long": len(english) - len(fits),
            "rows read by domain/general": sum(r["domain"] == "general" for r in rows),
            "rows read by domain/stem": sum(r["domain"] == "stem" for r in rows),
            "rows read by domain/code": sum(r["domain"] == "code" for r in rows),
            "rows read by domain/multilingual": sum(r["domain"] == "multilingual" for r in rows),
            "rows read by language/english": len(english),
            "pairs kept by domain/general": sum(r["domain"] == "general" for r in pairs),
            "pairs kept by domain/stem": sum(r["domain"] == "stem" for r in pairs),
            "pairs kept by language/english": len(pairs),
        }
        for k, v in counts.items():
            expect.setdefault(k, []).append(v)
        s = summary["splits"][split]
        assert s["domains_kept"].get("code", 0) == 0 and s["domains_kept"].get("multilingual", 0) == 0
        assert s["rows_read"] == len(rows) and s["pairs_kept"] == len(pairs)

    assert expect["rows read"][0] > 0 and expect["pairs kept"][0] > 0
    for label, values in expect.items():
        if label.startswith(("rows dropped/", "RL prompts dropped/")) and values == [0, 0]:
            assert label not in table  # a reason that never happened is not printed
            continue
        assert table[label] == values, label

    out = tmp_path / "run" / "data"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["DONE", "stats.json", "config.yaml"] + [f"{s}.{k}.jsonl" for s in ("train", "validation") for k in ("pairs", "prompts", "conversations")]
    )
    pairs = run_files.load_pairs(cfg.run_dir, "train")
    assert len(pairs) == expect["pairs kept"][0] and all(p.language.lower() == "english" for p in pairs)
    assert len(run_files.load_prompts(cfg.run_dir, "validation")) == expect["RL prompts kept"][1]
    assert len(run_files.load_conversations(cfg.run_dir, "train")) == len(pairs)
    assert json.loads((out / "stats.json").read_text())["splits"]["train"]["pairs_kept"] == len(pairs)
    with pytest.raises(FileNotFoundError, match="add 'test' to data.splits"):
        run_files.load_pairs(cfg.run_dir, "test")


# ----------------------------------------------------------------------------- hub subfolder, held-out validation


def hh_row(question: str, chosen: str = "I can't help with that.", rejected: str = "Sure, here is how.") -> dict:
    prefix = f"\n\nHuman: {question}"
    return {"chosen": f"{prefix}\n\nAssistant: {chosen}", "rejected": f"{prefix}\n\nAssistant: {rejected}"}


def test_hub_source_reads_a_data_dir(tmp_path, tokenizer, monkeypatch):
    """`data.hub_data_dir` is `load_dataset(..., data_dir=...)`, as Anthropic/hh-rlhf needs
    (data_dir="harmless-base"); offline through a local folder laid out the same way."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    repo = tmp_path / "hh-rlhf"
    for sub, n in (("harmless-base", 3), ("helpful-base", 5)):
        (repo / sub).mkdir(parents=True)
        write_jsonl(repo / sub / "train.jsonl", [hh_row(f"{sub} question {i}") for i in range(n)])
    cfg = DataConfig(source="hub", hub_id=str(repo), hub_data_dir="harmless-base", format="hh_rlhf", languages=[], splits=["train"])
    out = data_stage.prepare_split(cfg, "train", tokenizer)
    assert out.stats.source == f"{repo}[data_dir=harmless-base]:train"
    assert out.stats.pairs_kept == 3 and all(p.prompt[0]["content"].startswith("harmless-base") for p in out.pairs)


def test_held_out_score_is_stable_salted_and_monotone():
    from tiller.data.splits import held_out_score, is_held_out, prompt_half

    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(4000)]
    scores = [held_out_score(p) for p in prompts]
    assert all(0 <= s < 1 for s in scores) and scores == [held_out_score(p, 0) for p in prompts]
    assert [held_out_score(p, 1) for p in prompts[:50]] != scores[:50]  # the seed picks another part
    # the same key as the reward halves: the messages' canonical JSON, whatever the dict order
    assert held_out_score([{"content": "question 0", "role": "user"}]) == scores[0]
    # raising the fraction only adds prompts to the held-out side
    small = {i for i, p in enumerate(prompts) if is_held_out(p, 0.05)}
    large = {i for i, p in enumerate(prompts) if is_held_out(p, 0.2)}
    assert small < large
    assert abs(len(small) / 4000 - 0.05) < 0.015 and abs(len(large) / 4000 - 0.2) < 0.03  # binomial sd: 0.0034, 0.0063
    # independent of the reward / judge halves: what stays in train still splits about evenly
    kept = [p for p in prompts if not is_held_out(p, 0.2)]
    first = sum(prompt_half(p) == "first_half" for p in kept)
    assert abs(first / len(kept) - 0.5) < 0.04, first
    held = [p for p in prompts if is_held_out(p, 0.2)]
    assert abs(sum(prompt_half(p) == "first_half" for p in held) / len(held) - 0.5) < 0.08


def held_out_rows() -> list:
    """40 questions, 3 answer pairs each spread over the file, plus two malformed rows."""
    rows = [hh_row(f"question {q}", chosen=f"No, sorry ({r}).") for r in range(3) for q in range(40)]
    rows.insert(7, {"chosen": "\n\nHuman: hi\n\nAssistant: ", "rejected": "\n\nHuman: hi\n\nAssistant: Hello."})
    rows.insert(50, "{not json")
    return rows


def held_out_cfg(path: Path, **kw) -> DataConfig:
    """HH rows from one local file as train, validation held out of it (set validation_fraction)."""
    return DataConfig(source="local", files={"train": str(path)}, splits=["train", "validation"], format="hh_rlhf",
                      languages=[], max_prompt_tokens=100_000, **kw)


def test_held_out_validation_is_split_by_prompt_and_every_row_counted(tmp_path, tokenizer):
    from tiller.data.splits import prompt_key, subset

    path = write_jsonl(tmp_path / "one.jsonl", held_out_rows())
    cfg = held_out_cfg(path, on_bad_row="skip", validation_fraction=0.25, validation_seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = data_stage.prepare_held_out(cfg, tokenizer)
    train, val = out["train"], out["validation"]
    keys = {name: {prompt_key(p.prompt) for p in side.pairs} for name, side in out.items()}
    assert keys["train"].isdisjoint(keys["validation"]) and len(keys["train"] | keys["validation"]) == 40
    # all three rows of a prompt on one side; every row read counted once, the bad ones under train
    assert len(train.pairs) == 3 * len(keys["train"]) and len(val.pairs) == 3 * len(keys["validation"])
    assert train.stats.rows_read + val.stats.rows_read == 122
    assert dict(train.stats.dropped) == {"bad_row:chosen": 1, "bad_row:json": 1} and not val.stats.dropped
    assert train.stats.rows_read == train.stats.pairs_kept + 2 and val.stats.rows_read == val.stats.pairs_kept
    assert 4 <= len(keys["validation"]) <= 18  # 25% of 40 prompts: 10 on average
    assert val.stats.source == f"{path}, held out of train by prompt"
    # deterministic, and the reward / judge halves come from what stays in train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = data_stage.prepare_held_out(cfg, tokenizer)
    assert [p.to_dict() for p in again["validation"].pairs] == [p.to_dict() for p in val.pairs]
    for half in ("first_half", "second_half"):
        assert {prompt_key(p.prompt) for p in subset(train.pairs, half)}.isdisjoint(keys["validation"])
    # another seed holds out other prompts
    cfg.validation_seed = 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = data_stage.prepare_held_out(cfg, tokenizer)
    assert {prompt_key(p.prompt) for p in other["validation"].pairs} != keys["validation"]


def test_held_out_through_the_stage_prints_counts_and_writes_both_splits(tmp_path, tiny_dir, capsys):
    path = write_jsonl(tmp_path / "one.jsonl", held_out_rows())
    overrides = ["data.source=local", f"data.files.train={path}", "data.format=hh_rlhf", "data.languages=[]",
                 "data.on_bad_row=skip", "data.validation_fraction=0.25", f"model.name={tiny_dir}", f"run_dir={tmp_path / 'run'}"]
    from tiller.config_loading import config_from_dict

    cfg = config_from_dict({}, overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = data_stage.run(cfg)
    out = capsys.readouterr().out
    table = parse_table(out)
    s = summary["splits"]
    assert table["rows read"] == [s["train"]["rows_read"], s["validation"]["rows_read"]]
    assert sum(table["rows read"]) == 122 and table["rows dropped/bad_row:json"] == [1, 0]
    held = summary["held_out"]
    assert held["rows_read"] == {"train": s["train"]["rows_read"], "validation": s["validation"]["rows_read"]}
    assert f"rows read from train's source 122: train {s['train']['rows_read']} (with the 2 bad rows: no prompt to place them by)" in out
    assert f"pairs kept 120: train {s['train']['pairs_kept']}, validation {s['validation']['pairs_kept']}" in out
    assert "bad rows skipped in train (data.on_bad_row=skip): 2; each with its reason:" in out
    assert f"{path} line 8: field 'chosen': empty response" in out and f"{path} line 51: field 'json'" in out
    assert len(run_files.load_pairs(cfg.run_dir, "validation")) == s["validation"]["pairs_kept"] > 0
    assert json.loads((tmp_path / "run" / "data" / "stats.json").read_text())["held_out"]["prompts"] == held["prompts"]


def test_held_out_config_errors(tmp_path):
    from tiller.config import ConfigError
    from tiller.config_loading import config_from_dict

    base = ["data.source=local", "data.files.train=t.jsonl", "data.validation_fraction=0.1"]
    assert config_from_dict({}, base).data.validation_fraction == 0.1  # no validation file needed
    with pytest.raises(ConfigError, match="data.files.*no file is given for split.*validation"):
        config_from_dict({}, base[:2])
    with pytest.raises(ConfigError, match="data.files.validation.*keep one"):
        config_from_dict({}, base + ["data.files.validation=v.jsonl"])
    with pytest.raises(ConfigError, match="data.splits.*both train and validation"):
        config_from_dict({}, base + ["data.splits=[train]"])
    with pytest.raises(ConfigError, match="data.validation_fraction.*< 1"):
        config_from_dict({}, base[:2] + ["data.validation_fraction=1.0"])
    with pytest.raises(ConfigError, match="data.validation_fraction"):
        config_from_dict({}, base[:2] + ["data.validation_fraction=-0.1"])


def test_held_out_part_that_gets_no_prompt_is_an_error(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "one.jsonl", [hh_row("only question")])
    cfg = held_out_cfg(path, validation_fraction=1e-9)
    with pytest.raises(DataError, match="held out of 'train'.*no prompt fell in the held-out part.*raise data.validation_fraction"):
        data_stage.prepare_held_out(cfg, tokenizer)
    cfg.validation_fraction = 0.999999
    with pytest.raises(DataError, match="every prompt was held out for 'validation'.*lower it"):
        data_stage.prepare_held_out(cfg, tokenizer)


# ----------------------------------------------------------------------------- kept columns


def test_keep_columns_copies_source_fields_into_prompt_records(tmp_path, tokenizer):
    def row(i, pref=-1, **extra):
        return {**hs3_row(pref, context=[{"role": "user", "content": f"Question {i}?"}]), **extra}

    rows = [row(1, gold_answer="4", tests=[1, 2]), row(2, pref=0, gold_answer=None, tests=[]),  # a tie keeps its prompt
            row(3, gold_answer="Paris", tests=[3])]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    out = data_stage.prepare_split(local_cfg(path, keep_columns=["gold_answer", "tests"]), "train", tokenizer)
    assert [(p.source_row, p.extra) for p in out.prompts] == [
        (1, {"gold_answer": "4", "tests": [1, 2]}), (2, {"gold_answer": None, "tests": []}),
        (3, {"gold_answer": "Paris", "tests": [3]})]
    # Without keep_columns nothing is kept; the records round-trip through the run folder's file.
    assert all(p.extra == {} for p in data_stage.prepare_split(local_cfg(path), "train", tokenizer).prompts)
    folder = tmp_path / "run" / "data"
    folder.mkdir(parents=True)
    (folder / "train.prompts.jsonl").write_text("".join(json.dumps(p.to_dict()) + "\n" for p in out.prompts))
    (folder / "DONE").write_text("done\n")
    assert run_files.load_prompts(tmp_path / "run", "train") == out.prompts
    # A prompts file written before keep_columns existed (no `extra`) still loads; a bad one names the line.
    (folder / "train.prompts.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n"
                                                + json.dumps({"messages": [], "extra": [1]}) + "\n")
    with pytest.raises(DataError, match=r"train\.prompts\.jsonl line 2: field 'extra'"):
        run_files.load_prompts(tmp_path / "run", "train")


def test_keep_columns_missing_in_a_row_is_a_bad_row(tmp_path, tokenizer):
    rows = [{**hs3_row(), "gold_answer": "4"}, hs3_row(1)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataError, match=r"t\.jsonl line 2: field 'gold_answer': missing, and data.keep_columns keeps it"):
        data_stage.prepare_split(local_cfg(path, keep_columns=["gold_answer"]), "train", tokenizer)
    with pytest.warns(UserWarning, match="skipping bad rows"):
        out = data_stage.prepare_split(local_cfg(path, keep_columns=["gold_answer"], on_bad_row="skip"), "train", tokenizer)
    assert dict(out.stats.dropped) == {"bad_row:gold_answer": 1}
    assert [p.extra for p in out.prompts] == [{"gold_answer": "4"}]
