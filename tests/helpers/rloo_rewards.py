"""Rule rewards for the RLOO tests: cheap, exact, and learnable by a tiny random model."""

VOWELS = set("aeiouAEIOU")


def vowel_share(prompts, completions):
    """Share of letters that are vowels: about 0.4 for a random tiny model, up to 1.0."""
    scores = []
    for text in completions:
        letters = [c for c in text if c.isalpha()]
        scores.append(sum(c in VOWELS for c in letters) / len(letters) if letters else 0.0)
    return scores
