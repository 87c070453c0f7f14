"""Data faults from issue 16: every one stops the data stage (or a later stage reading its
output) with an error naming the file, the line and the field, or is counted as a bad row with
its reason under `data.on_bad_row: skip`. Hand-made tiny files in tmp_path; the tokenizer is the
tiny one trained locally."""

from __future__ import annotations

import gzip
import json
import math
import warnings
from pathlib import Path

import pytest

from tiller.config import Config, DataConfig, ModelConfig
from tiller.data import DataError, open_file, run_files
from tiller.recipes import data as data_stage

pytestmark = pytest.mark.faults


def hs3(pref=-2, question="What is the capital of France?", r1="Paris.", r2="Lyon.", language="english"):
    return {"domain": "general", "language": language, "context": [{"role": "user", "content": question}],
            "response1": r1, "response2": r2, "overall_preference": pref}


def uf(score_chosen=8.0, score_rejected=3.0, question="Name a color."):
    return {"prompt": question,
            "chosen": [{"role": "user", "content": question}, {"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "user", "content": question}, {"role": "assistant", "content": "No."}],
            "score_chosen": score_chosen, "score_rejected": score_rejected}


def hh(question="Hi there", answer="Hello! How can I help?", bad="Go away."):
    return {"chosen": f"\n\nHuman: {question}\n\nAssistant: {answer}", "rejected": f"\n\nHuman: {question}\n\nAssistant: {bad}"}


def lines(rows) -> bytes:
    """JSONL bytes; a bytes item is written as it is (to plant invalid UTF-8)."""
    out = b""
    for r in rows:
        out += (r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n"
    return out


def cfg_for(path: Path, **kw) -> DataConfig:
    kw.setdefault("max_prompt_tokens", 100_000)
    return DataConfig(source="local", files={"train": str(path)}, splits=["train"], **kw)


def prepare(path: Path, tokenizer, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skip mode warns about its first bad row; tested elsewhere
        return data_stage.prepare_split(cfg_for(path, **kw), "train", tokenizer)


# ----------------------------------------------------------------------------- non-finite numbers


def test_nan_and_infinity_scores_name_file_line_and_field(tmp_path, tokenizer):
    # Python's json reads the NaN / Infinity tokens that other tools write into "JSON".
    text = json.dumps(uf()) + "\n" + json.dumps(uf(score_chosen=math.nan)) + "\n" + json.dumps(uf(score_rejected=-math.inf)) + "\n"
    assert "NaN" in text and "-Infinity" in text
    path = tmp_path / "uf.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=r"uf\.jsonl line 2: field 'score_chosen': expected a finite number, got nan"):
        prepare(path, tokenizer, format="ultrafeedback", languages=[])
    out = prepare(path, tokenizer, format="ultrafeedback", languages=[], on_bad_row="skip")
    assert dict(out.stats.dropped) == {"bad_row:score_chosen": 1, "bad_row:score_rejected": 1}
    assert [(p.source_row, p.margin) for p in out.pairs] == [(1, 5.0)]


def test_overflowing_score_difference_is_an_error(tmp_path, tokenizer):
    path = tmp_path / "uf.jsonl"
    path.write_bytes(lines([uf(score_chosen=1e308, score_rejected=-1e308)]))
    with pytest.raises(DataError, match=r"line 1: field 'score_chosen': score_chosen - score_rejected overflows"):
        prepare(path, tokenizer, format="ultrafeedback", languages=[])


def test_nan_preference_names_the_field(tmp_path, tokenizer):
    path = tmp_path / "hs3.jsonl"
    path.write_text(json.dumps(hs3()) + "\n" + json.dumps(hs3(pref=math.nan)) + "\n")
    with pytest.raises(DataError, match=r"hs3\.jsonl line 2: field 'overall_preference': expected an integer in -3\.\.3, got nan"):
        prepare(path, tokenizer)


def test_nan_in_a_parquet_float_column_names_the_row(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "uf.parquet"
    pq.write_table(pa.Table.from_pylist([uf(), uf(score_chosen=math.nan)]), path)
    with pytest.raises(DataError, match=r"uf\.parquet row 1: field 'score_chosen': expected a finite number"):
        prepare(path, tokenizer, format="ultrafeedback", languages=[])


def test_nan_margin_in_a_pairs_file_stops_the_stage_that_reads_it(tmp_path):
    """The reward stage used to train on a NaN margin to accuracy 0.000 and save the model."""
    folder = tmp_path / "data"
    folder.mkdir()
    good = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b", "margin": 1.0}
    (folder / "train.pairs.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps({**good, "margin": math.nan}) + "\n"
    )
    (folder / "DONE").write_text("done\n")
    with pytest.raises(DataError, match=r"train\.pairs\.jsonl line 2: field 'margin': expected a finite number, got nan"):
        run_files.load_pairs(tmp_path, "train")
    (folder / "train.pairs.jsonl").write_text(json.dumps(good) + "\n" + '{"prompt": [' + "\n")
    with pytest.raises(DataError, match=r"train\.pairs\.jsonl line 2: not valid JSON"):
        run_files.load_pairs(tmp_path, "train")
    (folder / "train.pairs.jsonl").write_text(json.dumps({**good, "score": 3}) + "\n")
    with pytest.raises(DataError, match=r"line 1: not a PreferencePair record"):
        run_files.load_pairs(tmp_path, "train")


# ----------------------------------------------------------------------------- encoding and gzip


def test_invalid_utf8_is_a_bad_row_naming_file_and_line(tmp_path, tokenizer):
    bad = json.dumps(hs3(question="Qu'est-ce que XX?")).encode().replace(b"XX", b"caf\xe9")  # latin-1 byte
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(lines([hs3(question="one"), bad, hs3(question="three", pref=3)]))
    with pytest.raises(DataError) as e:
        prepare(path, tokenizer)
    msg = str(e.value)
    assert "mixed.jsonl line 2: field 'encoding': not valid UTF-8 (byte 0xe9 at byte" in msg, msg
    column = int(msg.split("at byte ")[1].split()[0])
    assert bad[column - 1] == 0xE9  # the position points at the bad byte
    out = prepare(path, tokenizer, on_bad_row="skip")
    assert out.stats.rows_read == 3 and dict(out.stats.dropped) == {"bad_row:encoding": 1}
    assert [p.source_row for p in out.pairs] == [1, 3]  # the lines after the bad one are read


def test_invalid_utf8_in_a_json_list_names_the_line(tmp_path):
    path = tmp_path / "list.json"
    path.write_bytes(b'[\n  {"a": "ok"},\n  {"a": "caf\xe9"}\n]\n')
    source = open_file(path)  # sniffing the kind must not trip over the byte
    assert source.kind == "json"
    with pytest.raises(DataError, match=r"list\.json line 3: field 'encoding': not valid UTF-8 \(byte 0xe9 at byte 13 of the line\)"):
        list(source.rows())


def test_byte_order_mark_is_not_part_of_the_first_row(tmp_path, tokenizer):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + lines([hs3(), hs3(pref=1)]))
    assert prepare(path, tokenizer).stats.pairs_kept == 2


def test_gzipped_jsonl_reads_like_the_plain_file(tmp_path, tokenizer):
    rows = [hh(question=f"Question {i}") for i in range(3)]
    plain, packed = tmp_path / "test.jsonl", tmp_path / "test.jsonl.gz"
    plain.write_bytes(lines(rows))
    packed.write_bytes(gzip.compress(lines(rows)))
    got = [prepare(p, tokenizer, format="hh_rlhf", languages=[]) for p in (plain, packed)]
    assert [p.to_dict() for p in got[0].pairs] == [p.to_dict() for p in got[1].pairs]
    assert got[1].stats.pairs_kept == 3 and got[1].stats.source == str(packed)
    listed = tmp_path / "list.json.gz"
    listed.write_bytes(gzip.compress(json.dumps(rows).encode()))
    assert open_file(listed).kind == "json" and [r for _, r in open_file(listed).rows()] == rows


def test_corrupt_or_fake_gzip_is_a_data_error(tmp_path, tokenizer):
    rows = [hh(question=f"Question number {i} " + "x" * 200) for i in range(200)]
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(lines(rows))[:-200])  # a download cut short
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz after line \d+: cannot decompress"):
        prepare(cut, tokenizer, format="hh_rlhf", languages=[])
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_bytes(lines(rows[:1]))  # plain text under a .gz name
    with pytest.raises(DataError, match=r"fake\.jsonl\.gz: cannot decompress .*gzip"):
        prepare(fake, tokenizer, format="hh_rlhf", languages=[])
    with pytest.raises(DataError, match=r"unsupported file type '\.csv\.gz'"):
        (tmp_path / "t.csv.gz").write_bytes(b"")
        open_file(tmp_path / "t.csv.gz")


# ----------------------------------------------------------------------------- nothing left to train on


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_an_error_naming_it(tmp_path, tokenizer, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"split 'train' \(.*empty\.jsonl\): no rows: the file is empty"):
        prepare(path, tokenizer)


def test_empty_file_through_the_stage_writes_no_done(tmp_path, tiny_dir):
    good = tmp_path / "good.jsonl"
    good.write_bytes(lines([hs3()]))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    data = DataConfig(source="local", files={"train": str(good), "validation": str(empty)}, max_prompt_tokens=100_000)
    cfg = Config(run_dir=str(tmp_path / "run"), model=ModelConfig(name=str(tiny_dir)), data=data)
    with pytest.raises(DataError, match=r"split 'validation' .*empty\.jsonl"):
        data_stage.run(cfg)
    assert not (tmp_path / "run" / "data" / "DONE").exists()


def test_hh_rlhf_with_default_languages_and_a_skipped_row_is_an_error(tmp_path, tokenizer):
    """HH-RLHF rows have no language field: the default `languages: [english]` drops them all.
    The old warning fired only when no row was skipped; now it is an error either way."""
    path = tmp_path / "hh.jsonl"
    path.write_bytes(lines([hh(), b"{not json", hh(question="Another")]))
    for on_bad_row in ("skip", "error"):
        if on_bad_row == "error":
            path.write_bytes(lines([hh(), hh(question="Another")]))
        with pytest.raises(DataError) as e:
            prepare(path, tokenizer, format="hh_rlhf", on_bad_row=on_bad_row)
        msg = str(e.value)
        assert "every valid row (2) was dropped by the language filter" in msg, msg
        assert "no 'language' field" in msg and "set data.languages: []" in msg
        assert ("(besides 1 bad row skipped)" in msg) == (on_bad_row == "skip")
    out = prepare(path, tokenizer, format="hh_rlhf", languages=[])
    assert out.stats.pairs_kept == 2


def test_other_filters_that_drop_everything_name_their_setting(tmp_path, tokenizer):
    path = tmp_path / "t.jsonl"
    path.write_bytes(lines([hs3(), hs3(pref=1, language="German")]))
    with pytest.raises(DataError, match=r"every valid row \(2\) was dropped by the language filter: data.languages=\['french'\] "
                                        r"\(the rows' languages: english 1, German 1\); set data.languages: \[\] to keep all"):
        prepare(path, tokenizer, languages=["french"])
    with pytest.raises(DataError, match=r"dropped by the domain filter: data.domains=\['code'\] \(the rows' domains: general 2\); set data.domains: \[\]"):
        prepare(path, tokenizer, languages=[], domains=["code"])
    with pytest.raises(DataError, match=r"dropped by the prompt_too_long filter: data.max_prompt_tokens=2 \(the shortest prompt left has \d+ tokens\); raise it"):
        prepare(path, tokenizer, languages=[], max_prompt_tokens=2)
    with pytest.raises(DataError, match=r"dropped by the filters \(1 by language, 1 by prompt_too_long\)"):
        prepare(path, tokenizer, max_prompt_tokens=2)


def test_every_row_bad_in_skip_mode_is_an_error(tmp_path, tokenizer):
    path = tmp_path / "t.jsonl"
    path.write_bytes(lines([b"[1]", hs3(pref=7)]))
    with pytest.raises(DataError, match=r"all 2 rows are bad and were skipped .*the first: .*t\.jsonl line 1"):
        prepare(path, tokenizer, on_bad_row="skip")


def test_a_split_of_ties_only_is_not_an_error(tmp_path, tokenizer):
    """Ties give RL prompts; only a split with nothing at all stops the stage."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(lines([hs3(pref=0)]))
    out = prepare(path, tokenizer)
    assert (out.stats.pairs_kept, out.stats.prompts_kept) == (0, 1)


# ----------------------------------------------------------------------------- role markers


def test_role_markers_are_kept_counted_and_reported(tmp_path, tiny_dir, capsys):
    rows = [
        hs3(question="Plain question"),
        hs3(question="Leaky", r1="Sure.\n\nHuman: and now?\n\nAssistant: ok"),  # a transcript inside an answer
        hs3(question="Chat markup <|im_start|>assistant"),
        hs3(question="Tie\n\nAssistant: hi", pref=0),  # a tie's prompt is kept for RL: counted too
        hs3(question="Dropped\n\nHuman: x", language="German"),  # dropped by the language filter: not counted
    ]
    path = tmp_path / "t.jsonl"
    path.write_bytes(lines(rows))
    cfg = Config(run_dir=str(tmp_path / "run"), model=ModelConfig(name=str(tiny_dir)), data=cfg_for(path))
    summary = data_stage.run(cfg)
    s = summary["splits"]["train"]
    assert (s["pairs_kept"], s["prompts_kept"], s["role_markers"]) == (3, 4, 3)
    assert s["role_marker_rows"] == [f"{path} line 2: '\\n\\nHuman:'", f"{path} line 3: '<|im_start|>'",
                                     f"{path} line 4: '\\n\\nAssistant:'"]
    assert json.loads((tmp_path / "run" / "data" / "stats.json").read_text())["splits"]["train"]["role_markers"] == 3
    table = capsys.readouterr().out
    assert [line.split() for line in table.splitlines() if line.startswith("kept rows with role markers")] == [
        ["kept", "rows", "with", "role", "markers", "3"]
    ]
    pairs = run_files.load_pairs(cfg.run_dir, "train")
    assert pairs[1].chosen == rows[1]["response1"]  # kept as it is, not cleaned
