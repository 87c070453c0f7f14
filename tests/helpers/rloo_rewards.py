"""Rule rewards for the RLOO tests: cheap, exact, and learnable by a tiny random model."""

VOWELS = set("aeiouAEIOU")


def vowel_share(prompts, completions):
    """Share of letters that are vowels: about 0.4 for a random tiny model, up to 1.0."""
    scores = []
    for text in completions:
        letters = [c for c in text if c.isalpha()]
        scores.append(sum(c in VOWELS for c in letters) / len(letters) if letters else 0.0)
    return scores


# Faults: rewards that go wrong. The call counter makes "the 3rd step's scores" exact in a
# single-process run (one call per step); tests reset it.
CALLS = {"n": 0}


def nan_on_third_call(prompts, completions):
    """vowel_share, except that every score of the 3rd call is NaN."""
    CALLS["n"] += 1
    scores = vowel_share(prompts, completions)
    return [float("nan")] * len(scores) if CALLS["n"] == 3 else scores


def always_inf(prompts, completions):
    return [float("inf")] * len(completions)


# Rewards that see the prompt's record (the columns data.keep_columns kept): a third argument.


def exact_match(prompts, completions, records):
    """Verifiable reward: 1.0 where the completion contains the record's gold answer, else 0.0."""
    return [float(str(r["gold_answer"]) in text) for text, r in zip(completions, records)]


def record_matches_prompt(prompts, completions, records):
    """1.0 for every completion whose record belongs to its own prompt (the record's `question`
    is the prompt's last turn); fails loudly otherwise, so a misaligned record cannot pass."""
    for prompt, record in zip(prompts, records, strict=True):
        assert record["question"] == prompt[-1]["content"], (record, prompt)
    return [1.0] * len(completions)
