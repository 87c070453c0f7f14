#!/usr/bin/env python3
"""Generate tiller's bundled sample preference dataset (HelpSteer3 ``preference`` schema).

Writes ``src/tiller/data/sample/helpsteer3/train.jsonl`` and ``validation.jsonl``: one JSON
object per line with the fields of the HelpSteer3 ``preference`` config:

    domain, language, context, response1, response2, overall_preference, individual_preference

Sign convention (as in HelpSteer3): ``overall_preference`` is an int in -3..3; negative means
response1 is better, positive means response2 is better, 0 means about the same.

Every row is synthetic. It is assembled from the hand-written topic entries in
``scripts/sample_topics.yaml``, next to this script (a question, the points of a correct
answer, and for many topics a confidently wrong version of one or more points), and from the
hand-written templates below for the ways a worse answer fails: a wrong fact, off-topic, rude,
an unneeded refusal, truncated, vague filler, repetition, or an ignored instruction. STEM
arithmetic questions come from small seeded generators. Code and multilingual rows are
hand-written pairs (in the same data file). Nothing is downloaded and no row is copied from HelpSteer3 or any
other dataset. The output depends only on the seed: the same seed gives byte-identical files.

Usage:
    python scripts/make_sample_data.py            # writes the files and prints their statistics
    python scripts/make_sample_data.py --seed 7 --out /tmp/sample
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import yaml

SEED = 20250517
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "tiller" / "data" / "sample" / "helpsteer3"

# Rows per split and domain. English = general + stem (the rows the English filter keeps).
SIZES = {
    "train": {"general": 360, "stem": 120, "code": 40, "multilingual": 40},
    "validation": {"general": 90, "stem": 30, "code": 10, "multilingual": 10},
}
TIE_RATE = 0.08  # share of English rows with overall_preference == 0
MULTI_TURN_RATE = 0.15  # share of English rows with a user/assistant/user context
VAL_TOPIC_FRACTION = 0.2  # hand-written topics held out for validation (never seen in train)
MAX_RESPONSE_WORDS = 120
MAX_USER_TURN_WORDS = 60
MAX_ROW_WORDS = 185  # whole context + the longer response, to fit 256 Llama tokens

# The hand-written content (topic entries, code and multilingual pairs) lives in a data file
# next to this script; its header describes the topic-entry format.
TOPICS_FILE = Path(__file__).resolve().with_name("sample_topics.yaml")


def load_content(path: Path = TOPICS_FILE) -> dict:
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = {"general_topics", "stem_topics", "code_items", "multilingual_items"} - set(content)
    if missing:
        raise ValueError(f"{path}: missing {sorted(missing)}")
    return content


CONTENT = load_content()
GENERAL_TOPICS = CONTENT["general_topics"]
STEM_TOPICS = CONTENT["stem_topics"]
CODE_ITEMS = CONTENT["code_items"]
ML_ITEMS = CONTENT["multilingual_items"]

# Per-language templates for the generic failures of multilingual rows.
ML_TEMPLATES = {
    "french": dict(
        refusal="Je suis désolé, mais je ne peux pas vous aider avec cette demande.",
        vague="C'est une excellente question ! Il y a beaucoup de facteurs à prendre en compte, et tout dépend de votre situation. Le mieux est de bien vous renseigner et de faire ce qui vous convient.",
        rude="Franchement, cherchez vous-même. Ce n'est pas compliqué.",
    ),
    "spanish": dict(
        refusal="Lo siento, pero no puedo ayudarte con esa pregunta.",
        vague="¡Buena pregunta! Hay muchos factores a tener en cuenta y todo depende de tu situación. Lo mejor es informarte bien y hacer lo que funcione para ti.",
        rude="¿En serio? Búscalo tú mismo, no es tan difícil.",
    ),
    "german": dict(
        refusal="Es tut mir leid, aber dabei kann ich dir nicht helfen.",
        vague="Gute Frage! Da spielen viele Faktoren eine Rolle, und es hängt ganz von deiner Situation ab. Am besten informierst du dich gründlich und machst, was für dich passt.",
        rude="Ernsthaft? Das kannst du doch selbst googeln.",
    ),
    "chinese": dict(
        refusal="抱歉，我无法回答这个问题。",
        vague="这是一个很好的问题！这取决于很多因素，每个人的情况都不一样。建议你多了解一下，然后选择适合自己的方法。",
        rude="这种问题你自己查一下不就知道了？别浪费我的时间。",
    ),
    "italian": dict(
        refusal="Mi dispiace, ma non posso aiutarti con questa richiesta.",
        vague="Ottima domanda! Ci sono molti fattori da considerare e tutto dipende dalla tua situazione. La cosa migliore è informarsi bene e fare ciò che funziona per te.",
        rude="Davvero? Cercalo da solo, non è difficile.",
    ),
    "portuguese": dict(
        refusal="Desculpe, mas não posso ajudar com essa pergunta.",
        vague="Ótima pergunta! Há muitos fatores a considerar e tudo depende da sua situação. O melhor é se informar bem e fazer o que funciona para você.",
        rude="Sério? Pesquise você mesmo, não é difícil.",
    ),
}
ML_ENGLISH_ONLY = [
    "Sorry, I can only answer in English. Could you ask your question in English?",
    "I don't understand this language well. Please write your question in English and I'll help.",
]

# --------------------------------------------------------------------------------------------
# Parsing the topic entries
# --------------------------------------------------------------------------------------------


def parse_topics(text: str, domain: str) -> list[dict]:
    topics = []
    for block in re.split(r"\n\s*\n", text.strip()):
        t = {"domain": domain, "kind": "info", "points": [], "wrong": {}, "viol": None}
        for line in block.strip().splitlines():
            key, _, val = line.partition(":")
            val = val.strip()
            if key == "Q":
                t["q"] = val
            elif key == "S":
                t["s"] = val
            elif key == "K":
                t["kind"] = val
            elif key == "A":
                t["points"].append(val)
            elif key == "W":
                idx, _, txt = val.partition("|")
                t["wrong"][int(idx) - 1] = txt.strip()
            elif key == "V":
                t["viol"] = val.replace("\\n", "\n")
            else:
                raise ValueError(f"bad line in topic block: {line!r}")
        assert t.get("q") and t.get("s") and t["points"], block
        assert t["kind"] in ("info", "howto", "prose", "poem"), block
        assert all(0 <= i < len(t["points"]) for i in t["wrong"]), block
        topics.append(t)
    return topics


def wrong_points(t: dict) -> list[str]:
    pts = list(t["points"])
    for i, w in t["wrong"].items():
        pts[i] = w
    return pts


# --------------------------------------------------------------------------------------------
# STEM calculation topics: seeded generators, each returns a topic with the same fields as a
# hand-written one plus `ans` / `wans` (the short final answer, right and wrong).
# --------------------------------------------------------------------------------------------


def num(x) -> str:
    """Format a number: thousands separators, at most two decimals, no trailing zeros."""
    if isinstance(x, Fraction):
        x = float(x)
    if abs(x - round(x)) < 1e-9:
        return f"{int(round(x)):,}"
    s = f"{x:,.2f}".rstrip("0").rstrip(".")
    return s


def a_n(n) -> str:
    """The English article for a spoken number: 'an 8-ohm', 'a 5-ohm'."""
    return "an" if re.match(r"(8|11|18)(\D|$)", str(n)) else "a"


def calc_topic(q, s, points, wpoints, ans, wans):
    wrong = {i: w for i, (p, w) in enumerate(zip(points, wpoints)) if p != w}
    return {"domain": "stem", "kind": "calc", "q": q, "s": s, "points": points, "wrong": wrong,
            "viol": None, "ans": ans, "wans": wans}


def gen_mult(rng):
    a = rng.choice([n for n in range(12, 99) if n % 10])
    b = rng.choice([n for n in range(13, 99) if n % 10])
    bt, bu = b - b % 10, b % 10
    p, x, y = a * b, a * bt, a * bu
    wp = p + rng.choice([-100, -20, -10, 10, 20, 100])
    q = rng.choice(["What is {a} × {b}?", "What's {a} times {b}?", "Can you work out {a} multiplied by {b}?",
                    "Quick math question: what is {a} × {b}?"]).format(a=a, b=b)
    pts = [f"{a} × {b} = {num(p)}.", f"Split {b} into {bt} + {bu}: {a} × {bt} = {num(x)} and {a} × {bu} = {num(y)}, and {num(x)} + {num(y)} = {num(p)}."]
    wpts = [f"{a} × {b} = {num(wp)}.", f"Split {b} into {bt} + {bu}: {a} × {bt} = {num(x)} and {a} × {bu} = {num(y)}, and {num(x)} + {num(y)} = {num(wp)}."]
    return calc_topic(q, "this multiplication", pts, wpts, num(p), num(wp))


def gen_percent(rng):
    pct = rng.choice([5, 10, 15, 20, 25, 30, 40, 60, 75])
    n = rng.choice(range(40, 901, 20))
    r = Fraction(n * pct, 100)
    dec, wdec = num(pct / 100), num(pct / 10)
    wr = r * 10
    form = rng.randrange(3)
    if form == 0:
        q = f"What is {pct}% of {n}?"
        p0, w0 = f"{pct}% of {n} is {num(r)}.", f"{pct}% of {n} is {num(wr)}."
        a, wa = num(r), num(wr)
    elif form == 1:
        q = f"A jacket costs ${n} and is {pct}% off. How much money do I save?"
        p0, w0 = f"You save ${num(r)}.", f"You save ${num(wr)}."
        a, wa = f"${num(r)}", f"${num(wr)}"
    else:
        q = f"How much is a {pct}% tip on a ${n} bill?"
        p0, w0 = f"A {pct}% tip on ${n} is ${num(r)}.", f"A {pct}% tip on ${n} is ${num(wr)}."
        a, wa = f"${num(r)}", f"${num(wr)}"
    pts = [p0, f"Convert {pct}% to a decimal, {dec}, and multiply: {dec} × {n} = {num(r)}."]
    wpts = [w0, f"Convert {pct}% to a decimal, {wdec}, and multiply: {wdec} × {n} = {num(wr)}."]
    return calc_topic(q, "this percentage", pts, wpts, a, wa)


def gen_linear(rng):
    a = rng.randint(2, 9)
    x = rng.randint(2, 15)
    b = rng.randint(1, 30)
    c = a * x + b
    q = rng.choice(["Solve for x: {a}x + {b} = {c}.", "What is x if {a}x + {b} = {c}?", "Find x in the equation {a}x + {b} = {c}."]).format(a=a, b=b, c=c)
    pts = [f"x = {x}.", f"Subtract {b} from both sides to get {a}x = {c - b}, then divide both sides by {a}: x = {x}.",
           f"Check: {a} × {x} + {b} = {a * x} + {b} = {c}."]
    if (c + b) % a == 0 and (c + b) // a != x:
        wx = (c + b) // a
        wpts = [f"x = {wx}.", f"Add {b} to both sides to get {a}x = {c + b}, then divide both sides by {a}: x = {wx}.",
                f"Check: {a} × {wx} + {b} = {c}."]
    else:
        wx = x + rng.choice([-1, 1, 2])
        wpts = [f"x = {wx}.", f"Subtract {b} from both sides to get {a}x = {c - b}, then divide both sides by {a}: x = {wx}.",
                f"Check: {a} × {wx} + {b} = {c}."]
    return calc_topic(q, "this equation", pts, wpts, f"x = {x}", f"x = {wx}")


def gen_speed(rng):
    who, pron, lo, hi = rng.choice([("A train", "its", 60, 150), ("A car", "its", 40, 110), ("A cyclist", "their", 12, 30),
                                    ("A bus", "its", 30, 70), ("A runner", "their", 8, 15)])
    t = rng.choice([0.5, 1.5, 2, 2.5, 3, 4])
    v = rng.randint(lo, hi)
    if t == 0.5 and v % 2:
        v += 1
    d = v * t
    tt = "30 minutes" if t == 0.5 else f"{num(t)} hours"
    q = f"{who} travels {num(d)} km in {tt}. What is {pron} average speed?"
    wv = d * t
    pts = [f"The average speed is {v} km/h.", f"Average speed is distance divided by time: {num(d)} km ÷ {num(t)} h = {v} km/h."]
    wpts = [f"The average speed is {num(wv)} km/h.", f"Average speed is distance multiplied by time: {num(d)} km × {num(t)} h = {num(wv)} km/h."]
    return calc_topic(q, "average speed", pts, wpts, f"{v} km/h", f"{num(wv)} km/h")


def gen_temp(rng):
    if rng.random() < 0.6:
        c = rng.choice(list(range(-20, 45, 5)) + [37])
        f = Fraction(c * 9, 5) + 32
        c95 = Fraction(c * 9, 5)
        q = rng.choice(["What is {c}°C in Fahrenheit?", "Convert {c}°C to Fahrenheit.",
                        "The forecast says {c}°C. What is that in Fahrenheit?"]).format(c=c)
        pts = [f"{c}°C is {num(f)}°F.", f"Use F = C × 9/5 + 32: {c} × 9/5 = {num(c95)}, and {num(c95)} + 32 = {num(f)}."]
        wpts = [f"{c}°C is {num(c95)}°F.", f"Use F = C × 9/5: {c} × 9/5 = {num(c95)}, so that's the answer in Fahrenheit."]
        return calc_topic(q, "temperature conversion", pts, wpts, f"{num(f)}°F", f"{num(c95)}°F")
    f = rng.choice([14, 23, 41, 50, 59, 68, 77, 86, 95, 104, 113, 212])
    c = Fraction((f - 32) * 5, 9)
    wc = Fraction(f * 5, 9)
    q = rng.choice(["What is {f}°F in Celsius?", "Convert {f}°F to Celsius.", "A recipe says {f}°F. What is that in Celsius?"]).format(f=f)
    pts = [f"{f}°F is {num(c)}°C.", f"Use C = (F − 32) × 5/9: {f} − 32 = {f - 32}, and {f - 32} × 5/9 = {num(c)}."]
    wpts = [f"{f}°F is about {num(round(float(wc), 1))}°C.", f"Use C = F × 5/9: {f} × 5/9 ≈ {num(round(float(wc), 1))}."]
    return calc_topic(q, "temperature conversion", pts, wpts, f"{num(c)}°C", f"{num(round(float(wc), 1))}°C")


def gen_rect(rng):
    l, w = rng.randint(3, 15), rng.randint(2, 12)
    if l == w:
        l += 1
    unit, tmpl = rng.choice([
        ("meters", "A rectangular room is {l} m long and {w} m wide. What is its floor area?"),
        ("centimeters", "What is the area of a rectangle that measures {l} cm by {w} cm?"),
        ("feet", "A garden bed is {l} feet long and {w} feet wide. How much area does it cover?"),
    ])
    A, P = l * w, 2 * (l + w)
    pts = [f"The area is {A} square {unit}.", f"For a rectangle, area = length × width, so {l} × {w} = {A} square {unit}."]
    wpts = [f"The area is {P} square {unit}.", f"For a rectangle, area = 2 × (length + width), so 2 × ({l} + {w}) = {P} square {unit}."]
    return calc_topic(tmpl.format(l=l, w=w), "this area", pts, wpts, f"{A} square {unit}", f"{P} square {unit}")


UNITS = [  # big, small, factor, singular, wrong factor
    ("kilometers", "meters", 1000, "kilometer", 100), ("meters", "centimeters", 100, "meter", 10),
    ("kilograms", "grams", 1000, "kilogram", 100), ("liters", "milliliters", 1000, "liter", 100),
    ("hours", "minutes", 60, "hour", 100), ("minutes", "seconds", 60, "minute", 100),
    ("days", "hours", 24, "day", 12), ("feet", "inches", 12, "foot", 10), ("yards", "feet", 3, "yard", 12),
]


def gen_units(rng):
    big, small, f, sing, wf = rng.choice(UNITS)
    x = rng.choice([1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 7.5, 8, 12, 15])
    r, wr = x * f, x * wf
    q = rng.choice(["How many {small} are in {x} {big}?", "Convert {x} {big} to {small}.", "What is {x} {big} in {small}?"]).format(
        small=small, x=num(x), big=big)
    pts = [f"{num(x)} {big} is {num(r)} {small}.", f"Since 1 {sing} = {num(f)} {small}, multiply: {num(x)} × {num(f)} = {num(r)}."]
    wpts = [f"{num(x)} {big} is {num(wr)} {small}.", f"Since 1 {sing} = {num(wf)} {small}, multiply: {num(x)} × {num(wf)} = {num(wr)}."]
    return calc_topic(q, "this unit conversion", pts, wpts, f"{num(r)} {small}", f"{num(wr)} {small}")


def gen_ohm(rng):
    while True:
        V = rng.choice([3, 5, 6, 9, 12, 24, 120, 230])
        R = rng.choice([2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 40, 50, 100])
        I = Fraction(V, R)
        if (I * 100).denominator == 1:
            break
    q = rng.choice(["A {V} V battery is connected across a {R} Ω resistor. What current flows?",
                    "What current flows through {aR} {R}-ohm resistor connected to {V} volts?"]).format(V=V, R=R, aR=a_n(R))
    pts = [f"The current is {num(I)} A.", f"By Ohm's law, I = V ÷ R = {V} ÷ {R} = {num(I)} amps."]
    wpts = [f"The current is {num(V * R)} A.", f"By Ohm's law, I = V × R = {V} × {R} = {num(V * R)} amps."]
    return calc_topic(q, "Ohm's law", pts, wpts, f"{num(I)} A", f"{num(V * R)} A")


def gen_mean(rng):
    k = rng.choice([4, 5])
    xs = [rng.randint(50, 99) for _ in range(k)]
    xs[-1] += (-sum(xs)) % k
    if xs[-1] > 100:
        xs[-1] -= k
    s = sum(xs)
    m = s // k
    lst = ", ".join(map(str, xs[:-1])) + f", and {xs[-1]}"
    q = rng.choice([f"What is the average of {lst}?", f"My test scores were {lst}. What's my average?"])
    pts = [f"The average is {m}.", f"Add them up to get {s}, then divide by {k}: {s} ÷ {k} = {m}."]
    if rng.random() < 0.5:
        wm = Fraction(s, k - 1)
        wpts = [f"The average is {num(round(float(wm), 2))}.", f"Add them up to get {s}, then divide by {k - 1}: {s} ÷ {k - 1} = {num(round(float(wm), 2))}."]
    else:
        ws = s + 10
        wm = Fraction(ws, k)
        wpts = [f"The average is {num(wm)}.", f"Add them up to get {ws}, then divide by {k}: {ws} ÷ {k} = {num(wm)}."]
    return calc_topic(q, "this average", pts, wpts, str(m), num(round(float(wm), 2)))


def gen_interest(rng):
    P = rng.choice([500, 1000, 1200, 2000, 2500, 4000, 5000])
    r = rng.choice([2, 3, 4, 5, 6])
    t = rng.choice([2, 3, 4, 5])
    I, I1 = Fraction(P * r * t, 100), Fraction(P * r, 100)
    q = f"If I put ${num(P)} in an account that pays {r}% simple interest per year, how much interest will I earn in {t} years?"
    pts = [f"You would earn ${num(I)} in interest.", f"Simple interest = principal × rate × time: {num(P)} × {num(r / 100)} × {t} = {num(I)}.",
           f"So the balance after {t} years would be ${num(P + I)}."]
    wpts = [f"You would earn ${num(I1)} in interest.", f"Simple interest = principal × rate: {num(P)} × {num(r / 100)} = {num(I1)}.",
            f"So the balance after {t} years would be ${num(P + I1)}."]
    return calc_topic(q, "simple interest", pts, wpts, f"${num(I)}", f"${num(I1)}")


def gen_circle(rng):
    r = rng.randint(2, 12)
    A, C = round(math.pi * r * r, 1), round(2 * math.pi * r, 1)
    q = rng.choice(["What is the area of a circle with a radius of {r} cm?", "A round table top has a radius of {r} cm. What is its area?"]).format(r=r)
    pts = [f"The area is about {num(A)} cm².", f"Use A = πr²: π × {r}² = π × {r * r} ≈ {num(A)} cm²."]
    wpts = [f"The area is about {num(C)} cm².", f"Use A = 2πr: 2 × π × {r} ≈ {num(C)} cm²."]
    return calc_topic(q, "the area of a circle", pts, wpts, f"about {num(A)} cm²", f"about {num(C)} cm²")


def gen_fraction(rng):
    b, d = rng.sample([2, 3, 4, 5, 6, 8, 9, 10], 2)
    a = rng.choice([k for k in range(1, b) if math.gcd(k, b) == 1])
    c = rng.choice([k for k in range(1, d) if math.gcd(k, d) == 1])
    L = b * d // math.gcd(b, d)
    n1, n2 = a * L // b, c * L // d
    res = Fraction(a, b) + Fraction(c, d)
    rs = f"{res.numerator}/{res.denominator}" if res.denominator != 1 else str(res.numerator)
    simpl = f", which simplifies to {rs}" if (n1 + n2, L) != (res.numerator, res.denominator) else ""
    q = rng.choice(["What is {a}/{b} + {c}/{d}?", "Add the fractions {a}/{b} and {c}/{d}.", "How much is {a}/{b} plus {c}/{d}?"]).format(a=a, b=b, c=c, d=d)
    pts = [f"{a}/{b} + {c}/{d} = {rs}.", f"Use a common denominator of {L}: {a}/{b} = {n1}/{L} and {c}/{d} = {n2}/{L}, so the sum is {n1 + n2}/{L}{simpl}."]
    wpts = [f"{a}/{b} + {c}/{d} = {a + c}/{b + d}.", f"Add the numerators and add the denominators: {a} + {c} = {a + c} and {b} + {d} = {b + d}, so the sum is {a + c}/{b + d}."]
    return calc_topic(q, "adding fractions", pts, wpts, rs, f"{a + c}/{b + d}")


def gen_kinetic(rng):
    m = rng.choice([2, 4, 5, 10, 20, 50, 80, 1000])
    v = rng.choice([2, 3, 4, 5, 6, 10, 20])
    ke, wke = Fraction(m * v * v, 2), Fraction(m * v, 2)
    q = rng.choice(["What is the kinetic energy of {am} {m} kg object moving at {v} m/s?",
                    "{Am} {m} kg cart rolls at {v} m/s. How much kinetic energy does it have?"]).format(m=m, v=v, am=a_n(m), Am=cap(a_n(m)))
    pts = [f"The kinetic energy is {num(ke)} joules.", f"Use KE = ½mv²: ½ × {m} × {v}² = ½ × {m} × {v * v} = {num(ke)} J."]
    wpts = [f"The kinetic energy is {num(wke)} joules.", f"Use KE = ½mv: ½ × {m} × {v} = {num(wke)} J."]
    return calc_topic(q, "kinetic energy", pts, wpts, f"{num(ke)} J", f"{num(wke)} J")


def gen_density(rng):
    while True:
        V = rng.choice([10, 20, 25, 40, 50, 80, 100])
        rho = rng.choice([0.4, 0.5, 0.6, 0.8, 2, 2.5, 3, 7.5, 8])
        m = rho * V
        if abs(m - round(m)) < 1e-9:
            break
    wrho = V / m
    sink = "sink" if rho > 1 else "float"
    wsink = "sink" if wrho > 1 else "float"
    q = f"A block has a mass of {num(m)} g and a volume of {V} cm³. What is its density, and will it float in water?"
    pts = [f"Its density is {num(rho)} g/cm³, so it will {sink}.", f"Density = mass ÷ volume = {num(m)} g ÷ {V} cm³ = {num(rho)} g/cm³.",
           f"Water's density is about 1 g/cm³, and objects denser than water sink while less dense ones float."]
    wpts = [f"Its density is {num(round(wrho, 2))} g/cm³, so it will {wsink}.", f"Density = volume ÷ mass = {V} cm³ ÷ {num(m)} g = {num(round(wrho, 2))} g/cm³.",
            pts[2]]
    return calc_topic(q, "density", pts, wpts, f"{num(rho)} g/cm³ ({sink}s)", f"{num(round(wrho, 2))} g/cm³")


CALC_GENERATORS = [gen_mult, gen_percent, gen_linear, gen_speed, gen_temp, gen_rect, gen_units, gen_ohm, gen_mean,
                   gen_interest, gen_circle, gen_fraction, gen_kinetic, gen_density]


def make_calc_topics(rng, n: int, seen: set) -> list[dict]:
    out = []
    i = 0
    while len(out) < n:
        t = CALC_GENERATORS[i % len(CALC_GENERATORS)](rng)
        i += 1
        if t["q"] in seen or not t["wrong"]:
            continue
        seen.add(t["q"])
        out.append(t)
    return out


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------

OPENERS = ["", "", "", "", "Sure! ", "Happy to help. ", "Good question. ", "Of course. ", "Great question! ",
           "Absolutely. ", "Sure thing. ", "Glad you asked. "]
REFORMAT_OPENERS = ["", "", "Sure! ", "Of course. ", "No problem. ", "Sure thing. "]
CLOSINGS = ["Hope this helps!", "Let me know if you'd like more detail.", "Good luck!",
            "Feel free to ask if anything is unclear.", "I hope that answers your question."]
PROSE_INTROS = ["", "", "Here's one you could use:\n\n", "Sure! Here's a draft:\n\n", "How about this:\n\n",
                "Here you go:\n\n", "Of course. Try this:\n\n"]
PROSE_CLOSINGS = ["Feel free to adjust it to your own style.", "Happy to tweak the tone if you'd like.",
                  "You can change the details to fit."]
BULLET_INTROS = ["Here are the key points:", "Here's a quick overview:", "A few things to know:",
                 "Here's what matters most:", "The main points:"]
STEP_INTROS = ["Here's how to do it:", "Follow these steps:", "Step by step:", "Try this:", "Here's what to do:"]
NUMBERED_INFO_INTROS = ["Here are the main points:", "Here's a summary:", "Briefly:", "In order of importance:"]
REFORMAT_LIST_INTROS = ["Sure, here it is as a list:", "Here you go:", "Of course:", "Here's the same answer as a list:", ""]
SHORT_FORMS = [("Short answer: ", "\n\n"), ("In brief: ", "\n\nMore detail: "), ("", "\n\nA bit more detail: "),
               ("The quick answer: ", " ")]
CALC_STEP_INTROS = ["Here's the working:", "Step by step:", "Let's work it out:"]

CONSTRAINT_SUFFIX = {
    "one_sentence": ["Answer in one sentence.", "Please keep it to one sentence.", "One sentence only, please."],
    "numbered": ["Please use a numbered list.", "Format the answer as a numbered list.", "Can you give it to me as a numbered list?"],
    "bullets": ["Use bullet points, please.", "Please answer with bullet points."],
    "no_list": ["Please answer in a short paragraph, no lists.", "No bullet points, please; just a short paragraph."],
    "word_limit": ["Keep it under 40 words.", "Please answer in 40 words or fewer."],
    "show_work": ["Please show your working.", "Show the steps, please."],
    "just_answer": ["Just give me the answer, no explanation needed.", "Only the final answer, please."],
}
REFORMAT_REQUEST = {
    "numbered": ["Can you put that in a numbered list?", "Could you rewrite that as numbered steps?"],
    "bullets": ["Could you turn that into bullet points?", "Can you format that as a bulleted list?"],
    "one_sentence": ["Can you sum that up in one sentence?", "Thanks. Could you shorten that to a single sentence?"],
    "just_answer": ["Thanks. So what's the final answer, in one line?", "OK, can you just give me the final result?"],
}
CONSTRAINT_DESC = {
    "one_sentence": "a one-sentence answer", "numbered": "a numbered list", "bullets": "bullet points",
    "no_list": "a short paragraph without lists", "word_limit": "an answer under 40 words",
    "show_work": "the working to be shown", "just_answer": "just the final answer",
    "builtin": "a specific length and format in the prompt",
}
FOLLOWUP_PREFIXES = ["Thanks! Another question: ", "Got it, thanks. ", "That's helpful. Next question: ",
                     "OK, thank you. ", "Great, thanks. One more thing: ", "Thanks. ", "Perfect. Now, "]

RUDE_NO_CONTENT = [
    "Seriously? This is basic stuff. Look it up yourself next time.",
    "I'm not your personal search engine. A two-second search would tell you everything about {s}.",
    "Why would you even ask this? Anyone who has thought about {s} for five minutes knows the answer.",
    "Not this again. Figure it out yourself; it's not that hard.",
    "Honestly, if you can't work this out on your own, I don't know what to tell you.",
    "That's a lazy question. Do some reading on {s} and come back when you've actually tried.",
    "Ugh. People ask me about {s} all day. Use your brain for once.",
]
RUDE_WITH_CONTENT = [
    "Ugh, fine. {p0} Next time, try looking it up before asking.",
    "Wow, really? {p0} That's it. Not exactly rocket science.",
    "Do I have to spell everything out? {p0} Figure out the rest yourself.",
    "{p0} Honestly, everyone already knows this.",
    "Fine, I'll explain it, even though it's pretty obvious. {p0} Try to remember it this time.",
    "This is a silly question, but whatever. {p0}",
]
REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I'm not able to provide advice about {s}. Please consult a qualified professional.",
    "Unfortunately, I can't provide information on this topic.",
    "As an AI language model, I'm unable to help with questions about {s}.",
    "I'd prefer not to answer this. Is there something else I can help you with?",
    "That's outside what I can assist with. You might try searching online or asking an expert.",
    "I apologize, but I cannot answer questions like this one.",
    "Sorry, I don't have enough information to answer that.",
]
VAGUE = [
    "That's a great question! There are many factors to consider when it comes to {s}, and the best approach really depends on your specific situation. It's important to do your research and think carefully about what works for you.",
    "Great question. {S} is something a lot of people wonder about. There are many different opinions out there, and each has its pros and cons. In the end, it's about finding what's right for you.",
    "Sure! When it comes to {s}, the key is to keep things balanced and be thoughtful. Everyone's situation is different, so there isn't a one-size-fits-all answer. Just do what feels right and adjust as you go.",
    "Happy to help. {S} can be a complex topic with a lot of nuance. Experts have different views, and the details matter a great deal. I'd recommend considering all the relevant factors before deciding.",
    "Good question! There's a lot to say about {s}. It depends on many things, and it's always a good idea to stay informed and keep an open mind.",
    "Of course. This is an interesting topic with many aspects to it. Generally speaking, it's best to approach {s} carefully and consider the context, since results can vary quite a bit from case to case.",
    "There are several ways to look at {s}. Some people prefer one approach and some prefer another, and both can work. The important thing is to stay consistent and do what makes sense for you.",
]
REPEAT_LINKS = ["Again, to be clear: ", "As I said: ", "To repeat: ", "Remember: "]

HEAD = {1: "@Response {B} is slightly better than @Response {W}.", 2: "@Response {B} is better than @Response {W}.",
        3: "@Response {B} is much better than @Response {W}."}
REASONS = {
    "factual": [
        "@Response {W} states that \"{d}\", which is not correct. @Response {B} gives accurate information about {s}.",
        "@Response {W} sounds confident, but it contains a factual error about {s} that could mislead the user. @Response {B} is accurate.",
        "Both responses are well organized, but @Response {W} gets a key fact wrong (\"{d}\"), while @Response {B} is correct.",
    ],
    "offtopic": [
        "@Response {W} does not answer the question; it talks about {d} instead of {s}. @Response {B} addresses the prompt directly.",
        "@Response {W} is off-topic and ignores what the user asked. @Response {B} answers the actual question.",
        "@Response {W} may be accurate, but it is about {d}, which the user did not ask about. @Response {B} stays on topic.",
    ],
    "offtopic_prev": [
        "@Response {W} answers the user's earlier question about {d} again instead of the new question about {s}. @Response {B} answers what was asked.",
        "The user moved on to a new question, but @Response {W} repeats information about {d}. @Response {B} correctly addresses {s}.",
    ],
    "rude": [
        "@Response {W} is rude and condescending toward the user. @Response {B} is polite and helpful.",
        "The tone of @Response {W} is dismissive and unprofessional, and it offers nothing useful. @Response {B} answers clearly and respectfully.",
        "@Response {W} insults the user for asking, which is unacceptable for an assistant. @Response {B} provides a complete, friendly answer.",
    ],
    "rude_content": [
        "Although @Response {W} includes a bit of correct information, its tone is condescending and it is much less complete than @Response {B}.",
        "@Response {W} gives only a fragment of the answer and talks down to the user. @Response {B} is polite and thorough.",
    ],
    "refusal": [
        "@Response {W} refuses a harmless request for no good reason. @Response {B} gives a useful, complete answer.",
        "@Response {W} is an unnecessary refusal that leaves the user with nothing. @Response {B} is helpful and on topic.",
        "There is nothing unsafe about this prompt, so the refusal in @Response {W} is unhelpful. @Response {B} answers the question.",
    ],
    "vague": [
        "@Response {W} is generic filler that never actually answers the question about {s}. @Response {B} gives concrete, specific information.",
        "@Response {W} sounds friendly but says nothing useful; it could be a reply to almost any question. @Response {B} is specific and actionable.",
    ],
    "truncated": [
        "@Response {W} is cut off mid-sentence and leaves the answer incomplete. @Response {B} is complete.",
        "@Response {W} stops abruptly before finishing, so the user only gets part of the answer. @Response {B} covers everything.",
    ],
    "repetition": [
        "@Response {W} repeats the same sentence several times, which adds nothing and is hard to read. @Response {B} is concise and covers more.",
        "@Response {W} is repetitive and gives less information than @Response {B}, which is clear and complete.",
    ],
    "constraint": [
        "The user asked for {d}. @Response {B} follows this instruction, while @Response {W} ignores it.",
        "Both responses contain similar information, but only @Response {B} respects the requested format ({d}).",
    ],
    "constraint_reformat": [
        "The user asked to rewrite the previous answer as {d}. @Response {W} just repeats the earlier text, while @Response {B} does what was asked.",
    ],
    "bug": [
        "@Response {W}'s code has a bug: {d}. @Response {B} is correct.",
        "@Response {B} gives working code with a clear explanation, while in @Response {W} {d}.",
    ],
    "ml_factual": [
        "@Response {W} is fluent but wrong: {d}. @Response {B} is accurate and answers in the user's language.",
        "@Response {W} contains an error ({d}). @Response {B} is correct and complete.",
    ],
    "ml_english": [
        "The user wrote in {d}, but @Response {W} replies in English and does not answer. @Response {B} answers in the user's language.",
    ],
}
TIE_REASONS = {
    "good": ["Both responses are accurate and helpful; they differ mainly in formatting.",
             "@Response 1 and @Response 2 give essentially the same correct information about {s}.",
             "Both answers are correct and complete, so neither is clearly better."],
    "good_lean": ["@Response {B} is slightly better because its layout is a little easier to follow, but both are correct.",
                  "Both are fine; @Response {B} reads a bit more naturally."],
    "weak": ["Neither response actually answers the question, so they are equally unhelpful.",
             "Both responses fail the user in similar ways; neither is better."],
    "weak_lean": ["Both responses are poor, but @Response {B} is marginally less unhelpful."],
}

# Failure-mode mix for non-tie English rows, and the preference strength of each.
# Measured (see README "Why this mix"): a 135M reward model trained on ~220 pairs of an earlier
# draw with factual 0.24 / offtopic 0.12 / constraint 0.13 was right on 100% of the style
# failures but at or below chance on wrong facts (0.42), off-topic answers (0.22-0.33) and ignored
# constraints (0.69), for 0.74 overall. Those failures stay, at a share a small model can carry.
MODE_WEIGHTS = {"factual": 0.12, "offtopic": 0.06, "truncated": 0.16, "vague": 0.17, "rude": 0.15,
                "refusal": 0.12, "repetition": 0.12, "constraint": 0.10}
STRENGTH = {  # mode -> (strengths, weights)
    "factual": ([1, 2, 3], [0.45, 0.45, 0.10]),
    "offtopic": ([2, 3], [0.4, 0.6]),
    "offtopic_prev": ([2, 3], [0.5, 0.5]),
    "truncated": ([1, 2], [0.5, 0.5]),
    "vague": ([1, 2, 3], [0.1, 0.6, 0.3]),
    "rude": ([2, 3], [0.25, 0.75]),
    "rude_content": ([1, 2, 3], [0.15, 0.65, 0.2]),
    "refusal": ([2, 3], [0.3, 0.7]),
    "repetition": ([1, 2, 3], [0.3, 0.6, 0.1]),
    "constraint": ([1, 2], [0.6, 0.4]),
    "constraint_reformat": ([1, 2], [0.4, 0.6]),
}


# --------------------------------------------------------------------------------------------
# Building responses
# --------------------------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def fill(tmpl: str, t: dict, p0: str = "") -> str:
    return tmpl.format(s=t["s"], S=cap(t["s"]), p0=p0)


def maybe_close(text: str, rng, sep: str, p: float = 0.2) -> str:
    return text + sep + rng.choice(CLOSINGS) if rng.random() < p else text


def compose(t: dict, pts: list[str], rng, constraint=None, ctx="normal", avoid_style=None, ans=None):
    """A well-formed answer built from `pts` (correct or corrupted), honoring `constraint`."""
    kind = t["kind"]
    if constraint in ("one_sentence", "just_answer"):
        return pts[0], "one"
    if constraint == "word_limit":
        sel = [pts[0]]
        for p in pts[1:]:
            if words(" ".join(sel + [p])) <= 38:
                sel.append(p)
        return " ".join(sel), "limit"
    if kind in ("prose", "poem"):
        body = ("\n" if kind == "poem" else " ").join(pts)
        intro = rng.choice(PROSE_INTROS)
        text = intro + body
        if rng.random() < 0.2:
            text += "\n\n" + rng.choice(PROSE_CLOSINGS)
        return text, "prose:" + intro
    openers = REFORMAT_OPENERS if ctx == "reformat" else OPENERS
    n = len(pts)
    if constraint == "numbered":
        style = "numbered"
    elif constraint == "bullets":
        style = "bullets"
    elif constraint == "no_list":
        style = "paragraph"
    elif kind == "calc":
        style = rng.choices(["paragraph", "work_first", "steps"], [0.55, 0.3, 0.15])[0]
    elif kind == "howto":
        style = rng.choices(["paragraph", "numbered", "bullets"], [0.4, 0.35, 0.25])[0]
    else:
        style = rng.choices(["paragraph", "bullets", "numbered", "short"], [0.55, 0.18, 0.1, 0.17])[0]
    if n < 2 and style != "paragraph":
        style = "paragraph"
    if style == "steps" and n < 3:
        style = "work_first"
    if avoid_style is not None and style == avoid_style and constraint is None:
        style = "paragraph" if style != "paragraph" else ("work_first" if kind == "calc" else "bullets" if n >= 2 else "paragraph")
    if style == "paragraph":
        text = maybe_close(rng.choice(openers) + " ".join(pts), rng, " ")
    elif style in ("bullets", "numbered"):
        if ctx == "reformat":
            intro = rng.choice(REFORMAT_LIST_INTROS)
        elif kind == "howto" and style == "numbered":
            intro = rng.choice(STEP_INTROS)
        elif style == "numbered":
            intro = rng.choice(NUMBERED_INFO_INTROS)
        else:
            intro = rng.choice(BULLET_INTROS + [""])
        if intro and ctx != "reformat" and rng.random() < 0.3:
            intro = rng.choice(["Sure! ", "Of course. ", "Happy to help. "]) + intro
        items = [f"- {p}" if style == "bullets" else f"{i}. {p}" for i, p in enumerate(pts, 1)]
        text = maybe_close((intro + "\n" if intro else "") + "\n".join(items), rng, "\n\n")
    elif style == "short":
        pre, mid = rng.choice(SHORT_FORMS)
        text = maybe_close(pre + pts[0] + mid + " ".join(pts[1:]), rng, " ")
    elif style == "work_first":
        text = maybe_close(rng.choice(openers) + " ".join(pts[1:]) + f" So the answer is {ans or t['ans']}.", rng, " ")
    elif style == "steps":
        text = rng.choice(CALC_STEP_INTROS) + "\n" + "\n".join(f"- {p}" for p in pts[1:]) + f"\n\nAnswer: {ans or t['ans']}"
    else:
        raise AssertionError(style)
    return text, style


def truncate(text: str, rng) -> str:
    """Cut a response mid-sentence, somewhere between 30% and 65% of its length."""
    cuts = [m.start() for m in re.finditer(r"\s", text)]
    good = []
    for c in cuts:
        head = text[:c].rstrip()
        if not (0.3 * len(text) <= len(head) <= 0.65 * len(text)):
            continue
        last = head.split()[-1]
        if head[-1].isalnum() and not re.fullmatch(r"\d+\.|-", last) and words(head) >= 5:
            good.append(head)
    if not good:
        return ""
    return rng.choice(good)


def repetition(t: dict, pts: list[str], rng) -> str:
    p0 = pts[0]
    joiner = "\n" if t["kind"] == "poem" else " "
    opener = "" if t["kind"] in ("prose", "poem") else rng.choice(OPENERS)
    form = rng.randrange(4)
    if form == 1 and len(pts) >= 2:
        body = joiner.join([p0, pts[1], p0, pts[1], p0])
    elif form == 2 and t["kind"] not in ("prose", "poem"):
        body = f"{p0} This is really important. {p0} This is really important. {p0}"
    elif form == 3 and t["kind"] not in ("prose", "poem"):
        links = rng.sample(REPEAT_LINKS, 2)
        body = f"{p0} {links[0]}{p0} {links[1]}{p0}"
    else:
        body = joiner.join([p0] * rng.choice([3, 4]))
    return opener + body


# Question forms whose first answer point is a complete one-sentence answer.
ONE_SENTENCE_Q = re.compile(r"(What is|What's the difference|What was|What does|What did|Who|When|Which|Why|How many|"
                            r"How long|How much|How often|How far|How strong|How big|How does|Is |Can |Should |At what|Roughly)")


def applicable_constraints(t: dict) -> list[str]:
    k = t["kind"]
    if k == "calc":
        return ["show_work", "just_answer"]
    if t["viol"]:
        return ["builtin"]
    if k in ("prose", "poem"):
        return []
    out = []
    if len(t["points"]) >= 3:
        out += ["numbered", "bullets", "no_list"]
    if k == "info" and ONE_SENTENCE_Q.match(t["q"]):
        out.append("one_sentence")
        if words(" ".join(t["points"])) > 50:
            out.append("word_limit")
    return out


def violate(t: dict, c: str, rng) -> str:
    """An answer with correct content that ignores constraint `c`."""
    pts = t["points"]
    if c == "one_sentence":
        text, _ = compose(t, pts, rng)
        if words(text) <= words(pts[0]) + 3:
            text = rng.choice(OPENERS) + " ".join(pts)
        return text
    if c in ("numbered", "bullets"):
        return maybe_close(rng.choice(OPENERS) + " ".join(pts), rng, " ")
    if c == "no_list":
        return compose(t, pts, rng, constraint=rng.choice(["numbered", "bullets"]))[0]
    if c == "word_limit":
        text = rng.choice(OPENERS) + " ".join(pts) + " " + rng.choice(CLOSINGS)
        return text
    if c == "show_work":
        return rng.choice([pts[0], "Sure! " + pts[0], f"The answer is {t['ans']}.", f"It's {t['ans']}."])
    if c == "just_answer":
        return ("Great question! Let's go through this carefully, step by step. " + " ".join(pts[1:]) + " " + pts[0]
                + " I hope this detailed explanation makes everything clear!")
    if c == "builtin":
        return rng.choice(["", "", "Sure! ", "Here you go:\n\n"]) + t["viol"]
    raise AssertionError(c)


def pick_strength(mode: str, rng) -> int:
    vals, ws = STRENGTH[mode]
    return rng.choices(vals, ws)[0]


def rha(x: float) -> int:
    """Round half away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def annotator_scores(overall: int, rng) -> list[int]:
    n = rng.choices([1, 2, 3], [0.15, 0.25, 0.6])[0]
    if n == 1:
        return [overall]
    while True:
        if overall == 0:
            scores = [rng.choice([-1, 0, 0, 0, 1]) for _ in range(n)]
        else:
            sgn, mag = (1 if overall > 0 else -1), abs(overall)
            scores = [sgn * min(3, max(1, mag + rng.choices([-1, 0, 1], [0.2, 0.6, 0.2])[0])) for _ in range(n)]
        if rha(sum(scores) / n) == overall:
            return scores


def shuffled(xs: list, rng) -> list:
    xs = list(xs)
    rng.shuffle(xs)
    return xs


def reasonings(overall: int, mode: str, t_s: str, detail: str, rng, tie_kind: str = "good") -> list[dict]:
    """One {score, reasoning} per annotator; annotators of a row use different wordings where possible."""
    out = []
    tie_heads = shuffled(["Both responses are about the same. ", "@Response 1 and @Response 2 are about equally good. "]
                         if tie_kind == "good" else ["Both responses are about the same. ", "Neither response is better. "], rng)
    bodies = {k: shuffled(v, rng) for k, v in ({**REASONS, **TIE_REASONS}).items()}
    for i, sc in enumerate(annotator_scores(overall, rng)):
        if sc == 0:
            body = bodies[tie_kind][i % len(bodies[tie_kind])]
            txt = tie_heads[i % 2] + body.format(s=t_s)
        else:
            B, W = (1, 2) if sc < 0 else (2, 1)
            head = HEAD[abs(sc)].format(B=B, W=W)
            key = tie_kind + "_lean" if overall == 0 else mode
            body = bodies[key][i % len(bodies[key])].format(B=B, W=W, s=t_s, d=detail)
            txt = head + " " + body
        out.append({"score": sc, "reasoning": txt})
    return out


def short_quote(text: str, n: int = 14) -> str:
    w = text.rstrip(".").split()
    return " ".join(w[:n]) + ("..." if len(w) > n else "")


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def make_row(domain, language, context, good, bad, better, strength, rng, mode, s, detail, tie_kind="good"):
    if better == 1:
        r1, r2, overall = good, bad, -strength
    else:
        r1, r2, overall = bad, good, strength
    return {
        "domain": domain,
        "language": language,
        "context": context,
        "response1": r1,
        "response2": r2,
        "overall_preference": overall,
        "individual_preference": reasonings(overall, mode, s, detail, rng, tie_kind),
    }


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def weak_response(kind: str, t: dict, rng) -> str:
    if kind == "vague":
        return fill(rng.choice(VAGUE), t)
    if kind == "refusal":
        return fill(rng.choice(REFUSALS), t)
    if kind == "rude":
        return fill(rng.choice(RUDE_NO_CONTENT), t)
    if kind == "truncated":
        return truncate(compose(t, t["points"], rng)[0], rng)
    raise AssertionError(kind)


def fits(context: list[dict], responses: list[str]) -> bool:
    if any(not r or words(r) > MAX_RESPONSE_WORDS for r in responses):
        return False
    if any(m["role"] == "user" and words(m["content"]) > MAX_USER_TURN_WORDS for m in context):
        return False
    return sum(words(m["content"]) for m in context) + max(words(r) for r in responses) <= MAX_ROW_WORDS


def try_english_row(t: dict, pool: list[dict], rng, tie: bool, better: int, multiturn: bool):
    kind, pts = t["kind"], t["points"]
    mt = None
    if multiturn:
        can_reformat = kind in ("info", "howto", "calc") and len(pts) >= 2 and words(" ".join(pts)) <= 60 and not t["viol"]
        mt = "reformat" if can_reformat and rng.random() < 0.4 else "followup"

    # Failure mode.
    if tie:
        mode = "tie"
    else:
        weights = dict(MODE_WEIGHTS)
        if not t["wrong"]:
            weights["factual"] = 0.0
        if mt != "reformat" and not applicable_constraints(t):
            weights["constraint"] = 0.0
        mode = rng.choices(list(weights), list(weights.values()))[0]

    # Constraint on the answer's form (from the prompt, or from a reformat request).
    single = ("one_sentence", "just_answer", "word_limit")
    if mt == "reformat":
        opts = {"info": ["numbered", "bullets", "one_sentence"], "howto": ["numbered", "bullets"],
                "calc": ["just_answer", "numbered"]}[kind]
        if tie:
            opts = [o for o in opts if o not in single]
        c = rng.choice(opts)
    elif mode == "constraint":
        c = rng.choice(applicable_constraints(t))
    elif t["viol"]:
        c = "builtin"
    elif rng.random() < 0.2:
        opts = applicable_constraints(t)
        if mode in ("tie", "truncated"):
            opts = [o for o in opts if o not in single]
        c = rng.choice(opts) if opts else None
    else:
        c = None

    q = t["q"]
    if mt != "reformat" and c in CONSTRAINT_SUFFIX:
        q = q + " " + rng.choice(CONSTRAINT_SUFFIX[c])

    t0 = None
    a0 = None
    if mt == "followup":
        t0 = rng.choice([x for x in pool if x["s"] != t["s"]])
        sel = [t0["points"][0]]
        for p in t0["points"][1:]:
            if words(" ".join(sel + [p])) <= 40:
                sel.append(p)
        a0 = compose(t0, sel if t0["kind"] not in ("prose", "poem") else t0["points"], rng, constraint="no_list")[0]
        prefix = rng.choice(FOLLOWUP_PREFIXES)
        last = prefix + (q[:1].lower() + q[1:] if prefix.endswith(", ") else q)
        context = [user(t0["q"]), assistant(a0), user(last)]
    elif mt == "reformat":
        a0 = compose(t, pts, rng, constraint="no_list")[0]
        context = [user(t["q"]), assistant(a0), user(rng.choice(REFORMAT_REQUEST[c]))]
    else:
        context = [user(q)]
    ctx = "reformat" if mt == "reformat" else "normal"

    good, good_style = compose(t, pts, rng, constraint=c, ctx=ctx)
    detail, tie_kind = "", "good"
    if mode == "tie":
        if rng.random() < 0.8:
            for _ in range(10):
                bad, _ = compose(t, pts, rng, constraint=c, ctx=ctx, avoid_style=good_style)
                if bad != good:
                    break
        else:
            tie_kind = "weak"
            ka, kb = rng.choice([("vague", "vague"), ("refusal", "vague"), ("refusal", "refusal"),
                                 ("truncated", "truncated"), ("rude", "refusal")])
            good, bad = weak_response(ka, t, rng), weak_response(kb, t, rng)
        key, strength = "tie", 0
    elif mode == "factual":
        bad = compose(t, wrong_points(t), rng, constraint=c, ctx=ctx, ans=t.get("wans"))[0]
        hits = [w for w in t["wrong"].values() if w in bad]
        if not hits:
            return None
        key, detail = "factual", short_quote(hits[0])
    elif mode == "offtopic":
        if mt == "followup":
            other, key = t0, "offtopic_prev"
        else:
            other, key = rng.choice([x for x in pool if x["s"] != t["s"]]), "offtopic"
        c_other = c if c in applicable_constraints(other) and c != "builtin" else None
        bad = compose(other, other["points"], rng, constraint=c_other, ctx=ctx)[0]
        detail = other["s"]
    elif mode == "truncated":
        bad = truncate(compose(t, pts, rng, constraint=c, ctx=ctx)[0], rng)
        key = "truncated"
    elif mode == "vague":
        bad, key = fill(rng.choice(VAGUE), t), "vague"
    elif mode == "rude":
        if rng.random() < 0.5 or kind in ("prose", "poem"):
            bad, key = fill(rng.choice(RUDE_NO_CONTENT), t), "rude"
        else:
            bad, key = fill(rng.choice(RUDE_WITH_CONTENT), t, p0=pts[0]), "rude_content"
    elif mode == "refusal":
        bad, key = fill(rng.choice(REFUSALS), t), "refusal"
    elif mode == "repetition":
        bad, key = repetition(t, pts, rng), "repetition"
    elif mode == "constraint":
        if mt == "reformat":
            bad = a0 if rng.random() < 0.5 else compose(t, pts, rng, constraint="no_list", ctx=ctx)[0]
            key = "constraint_reformat"
        else:
            bad, key = violate(t, c, rng), "constraint"
        detail = CONSTRAINT_DESC[c]
    else:
        raise AssertionError(mode)

    if key != "tie":
        strength = pick_strength(key, rng)
    if not bad or not good or bad == good or not fits(context, [good, bad]):
        return None
    row = make_row(t["domain"], "english", context, good, bad, better, strength, rng, key, t["s"], detail, tie_kind)
    return row, {"mode": key, "multi_turn": mt, "constraint": c, "q": t["q"]}


def english_rows(pool: list[dict], n: int, rng, seen: set):
    seq: list[dict] = []
    while len(seq) < n:
        p = list(pool)
        rng.shuffle(p)
        seq += p
    seq = seq[:n]
    ties = set(rng.sample(range(n), round(TIE_RATE * n)))
    multi = set(rng.sample(range(n), round(MULTI_TURN_RATE * n)))
    n_pairs = n - len(ties)
    better = [1] * (n_pairs // 2) + [2] * (n_pairs - n_pairs // 2)
    rng.shuffle(better)
    rows, metas = [], []
    for i, t in enumerate(seq):
        b = 1 if i in ties else better.pop()
        for _ in range(200):
            out = try_english_row(t, pool, rng, i in ties, b, i in multi)
            if out is None:
                continue
            row, meta = out
            ident = json.dumps([row["context"], row["response1"], row["response2"]])
            if ident not in seen:
                seen.add(ident)
                break
        else:
            raise RuntimeError(f"could not build a row for {t['q']!r}")
        rows.append(row)
        metas.append(meta)
    return rows, metas


LANG_NAME = {"python": "Python", "sql": "SQL", "javascript": "JavaScript", "french": "French", "spanish": "Spanish",
             "german": "German", "chinese": "Chinese", "italian": "Italian", "portuguese": "Portuguese"}
CODE_REFUSALS = ["I'm sorry, but I can't help with writing code.",
                 "I'm not able to help with programming questions. Please consult the official {L} documentation.",
                 "Sorry, I can't assist with that request."]
CODE_VAGUE = [
    "There are several ways to do this in {L}, and the best one depends on your use case. You could use a loop or one of the built-in functions. I'd recommend checking the official documentation for the details.",
    "This is a common task in {L}. It mostly comes down to picking the right approach and testing it carefully. Try a few options and see which works best for your data.",
    "Good question! {L} has many features that can help with this. Think about what your code needs to do, look at some examples online, and you should be able to put it together.",
]
CODE_RUDE = ["This is literally on the first page of the {L} docs. Read them.",
             "Seriously? Any beginner {L} tutorial covers this. Look it up."]


def truncate_any(text: str, rng) -> str:
    if " " in text.strip():
        return truncate(text, rng)
    # No spaces (e.g. Chinese): cut by characters, not right after punctuation.
    lo, hi = int(0.35 * len(text)), int(0.6 * len(text))
    cuts = [i for i in range(lo, hi) if text[i - 1] not in "，。：；！？、,.:;!?"]
    return text[: rng.choice(cuts)] if cuts else ""


def item_rows(items: list[dict], domain: str, rng, n: int):
    """Two rows per item: the item's own wrong answer, and a generic failure."""
    rows, metas = [], []
    better = [1] * (n // 2) + [2] * (n - n // 2)
    rng.shuffle(better)
    for it in items:
        lang = it["lang"]
        L = LANG_NAME[lang]
        ctx = [user(it["q"])]
        sev = it["sev"] if rng.random() < 0.7 else min(3, max(1, it["sev"] + rng.choice([-1, 1])))
        key = "bug" if domain == "code" else "ml_factual"
        rows.append(make_row(domain, lang, ctx, it["good"], it["bad"], better.pop(), sev, rng, key, "", it["err"]))
        metas.append({"mode": key, "multi_turn": None, "constraint": None, "q": it["q"]})
        if domain == "code":
            g = rng.choices(["refusal", "vague", "truncated", "rude"], [0.3, 0.3, 0.25, 0.15])[0]
            if g == "truncated":
                bad = truncate_any(it["good"], rng)
            else:
                bad = rng.choice({"refusal": CODE_REFUSALS, "vague": CODE_VAGUE, "rude": CODE_RUDE}[g]).format(L=L)
            s = "the coding task"
        else:
            g = rng.choices(["refusal", "vague", "rude", "english", "truncated"], [0.25, 0.25, 0.15, 0.15, 0.2])[0]
            tm = ML_TEMPLATES[lang]
            bad = {"refusal": lambda: tm["refusal"], "vague": lambda: tm["vague"], "rude": lambda: tm["rude"],
                   "english": lambda: rng.choice(ML_ENGLISH_ONLY), "truncated": lambda: truncate_any(it["good"], rng)}[g]()
            s = "the topic"
        key = {"english": "ml_english"}.get(g, g)
        strength = pick_strength(key, rng) if key in STRENGTH else rng.choice([2, 3])
        rows.append(make_row(domain, lang, ctx, it["good"], bad, better.pop(), strength, rng, key, s, L))
        metas.append({"mode": key, "multi_turn": None, "constraint": None, "q": it["q"]})
    return rows, metas


# --------------------------------------------------------------------------------------------
# Assembly, statistics, output
# --------------------------------------------------------------------------------------------


def build(seed: int):
    rng = random.Random(seed)
    general = parse_topics(GENERAL_TOPICS, "general")
    facts = parse_topics(STEM_TOPICS, "stem")
    all_q = [t["q"] for t in general + facts]
    assert len(all_q) == len(set(all_q)), "duplicate questions in topic entries"

    def hold_out(topics):
        ts = list(topics)
        rng.shuffle(ts)
        k = round(VAL_TOPIC_FRACTION * len(ts))
        return ts[k:], ts[:k]

    gen_train, gen_val = hold_out(general)
    fact_train, fact_val = hold_out(facts)
    seen_q = set(all_q)
    n_calc_train = SIZES["train"]["stem"] - len(fact_train)
    n_calc_val = SIZES["validation"]["stem"] - len(fact_val)
    calc = make_calc_topics(rng, n_calc_train + n_calc_val, seen_q)
    pools = {
        "train": {"general": gen_train, "stem": fact_train + calc[:n_calc_train]},
        "validation": {"general": gen_val, "stem": fact_val + calc[n_calc_train:]},
    }
    out = {}
    seen_rows: set = set()
    for split in ("train", "validation"):
        rows, metas = [], []
        for domain in ("general", "stem"):
            r, m = english_rows(pools[split][domain], SIZES[split][domain], rng, seen_rows)
            rows += r
            metas += m
        for domain, items in (("code", CODE_ITEMS), ("multilingual", ML_ITEMS)):
            chosen = [it for it in items if it.get("split", "train") == split]
            assert 2 * len(chosen) == SIZES[split][domain], (split, domain, len(chosen))
            r, m = item_rows(chosen, domain, rng, SIZES[split][domain])
            rows += r
            metas += m
        order = list(range(len(rows)))
        rng.shuffle(order)
        out[split] = ([rows[i] for i in order], [metas[i] for i in order])
    return out


def all_user_questions(rows, metas) -> set:
    qs = set()
    for row, meta in zip(rows, metas):
        qs.add(meta["q"])
        qs.update(m["content"] for m in row["context"][:1])
    return qs


def fmt_counter(c: Counter, keys=None) -> str:
    keys = keys if keys is not None else sorted(c)
    return ", ".join(f"{k}: {c[k]}" for k in keys)


def report(out) -> str:
    lines = []
    for split, (rows, metas) in out.items():
        eng = [(r, m) for r, m in zip(rows, metas) if r["language"] == "english"]
        er = [r for r, _ in eng]
        ties = sum(r["overall_preference"] == 0 for r in er)
        lines.append(f"## {split}: {len(rows)} rows")
        lines.append(f"domain:   {fmt_counter(Counter(r['domain'] for r in rows), ['general', 'stem', 'code', 'multilingual'])}")
        lines.append(f"language: {fmt_counter(Counter(r['language'] for r in rows))}")
        lines.append(f"english (language == 'english'): {len(er)} rows "
                     f"(general {sum(r['domain'] == 'general' for r in er)}, stem {sum(r['domain'] == 'stem' for r in er)})")
        lines.append(f"  ties (overall_preference == 0): {ties} ({100 * ties / len(er):.1f}%); pairs: {len(er) - ties}")
        lines.append(f"  overall_preference: {fmt_counter(Counter(r['overall_preference'] for r in er), range(-3, 4))}")
        lines.append(f"  strength |overall_preference| of pairs: "
                     f"{fmt_counter(Counter(abs(r['overall_preference']) for r in er if r['overall_preference']), [1, 2, 3])}")
        lines.append(f"  response1 better: {sum(r['overall_preference'] < 0 for r in er)}, "
                     f"response2 better: {sum(r['overall_preference'] > 0 for r in er)}")
        lines.append(f"  multi-turn contexts: {sum(len(r['context']) > 1 for r in er)} "
                     f"({fmt_counter(Counter(m['multi_turn'] for _, m in eng if m['multi_turn']))})")
        lines.append(f"  annotators per row: {fmt_counter(Counter(len(r['individual_preference']) for r in er), [1, 2, 3])}")
        lines.append(f"  worse-response kind: {fmt_counter(Counter(m['mode'] for _, m in eng))}")
        lines.append(f"  distinct questions: {len(set(m['q'] for _, m in eng))}")
        other = [r for r in rows if r["language"] != "english"]
        lines.append(f"non-english rows: {len(other)}; strength: "
                     f"{fmt_counter(Counter(abs(r['overall_preference']) for r in other), [1, 2, 3])}")
        lines.append("")
    tq = all_user_questions(*out["train"])
    vq = all_user_questions(*out["validation"])
    lines.append(f"questions shared by train and validation: {len(tq & vq)}")
    return "\n".join(lines)


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out = build(args.seed)
    for split, (rows, _) in out.items():
        write_jsonl(args.out / f"{split}.jsonl", rows)
    shown = args.out.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    print(f"seed {args.seed}; wrote {shown}/train.jsonl and {shown}/validation.jsonl\n")
    print(report(out))


if __name__ == "__main__":
    main()
