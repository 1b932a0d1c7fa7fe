"""Tests of diffa.scoring.text: the WeNet and Whisper normalisation styles."""
import random
import unicodedata

import pytest

from diffa.scoring.text import STYLES, normalize, tokenize, wenet_tokens

PUNCT = set("!,?、。！，；？：「」︰『』《》")


def wenet_oracle(text):
    """WeNet compute-wer --char=1 as a plain character scanner, written from its documented rules:
    skip separators and leading punctuation, one token per Lo character, else an ASCII run (a '<'
    run closes after '>'), then upper-case, delete <...> tags, drop empty tokens."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        cat = unicodedata.category(c)
        if c in PUNCT or c in " \t\r\n" or cat in ("Zs", "Cn"):
            i += 1
        elif cat == "Lo":
            out.append(c)
            i += 1
        else:
            j = i + 1
            while j < len(text):
                d = text[j]
                if ord(d) >= 128 or d in " \t\r\n" or (c == "<" and d == ">"):
                    break
                j += 1
            if j < len(text) and text[j] == ">":
                j += 1
            out.append(text[i:j])
            i = j
    cleaned = []
    for token in out:
        token, kept, inside = token.upper(), "", False
        for ch in token:
            if ch == "<":
                inside = True
            elif ch == ">" and inside:
                inside = False
            elif not inside:
                kept += ch
        if kept:
            cleaned.append(kept)
    return cleaned


def test_wenet_cases():
    assert wenet_tokens("hello, world!") == ["HELLO,", "WORLD!"]
    assert wenet_tokens(", leading ,comma ! x") == ["LEADING", "COMMA", "X"]
    assert wenet_tokens("<unk> a<noise>b <sil>") == ["AB"]  # one ASCII run, tag deleted inside it
    assert wenet_tokens("<unk><noise>") == []
    assert wenet_tokens("我爱 NLP，真的") == ["我", "爱", "NLP", "真", "的"]
    assert wenet_tokens("a\u3000b\tc") == ["A", "B", "C"]  # ideographic space is Zs
    assert wenet_tokens("<nospeech>") == []
    assert normalize("It's  fine", "wenet") == "IT'S FINE"


def test_wenet_matches_oracle_on_random_text():
    rng = random.Random(0)
    alphabet = list("abcXYZ019 ,.!?<>'-\t") + ["你", "好", "é", "ß", "，", "。", "\u3000", "ü", "à"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert wenet_tokens(text) == wenet_oracle(text), text


def test_whisper_styles():
    english = normalize("Mr. Jones paid TWENTY dollars, didn't he?", "whisper_english")
    assert english == "mister jones paid $20 did not he"
    assert normalize("The colour grey [laughter] um", "whisper_english") == "the color gray"
    assert normalize("Héllo (aside), WORLD!", "whisper_basic") == "héllo world"
    # both Whisper styles collapse whitespace and give "" for nothing
    assert normalize("  [noise]  ", "whisper_english") == ""
    assert tokenize("Hello   world", "whisper_basic") == ["hello", "world"]


def test_char_units_drop_spaces():
    assert tokenize("ab c", "wenet", "char") == ["A", "B", "C"]
    assert tokenize("你好 ok", "whisper_basic", "char") == ["你", "好", "o", "k"]


@pytest.mark.parametrize("style", STYLES)
def test_bad_arguments(style):
    with pytest.raises(ValueError, match="expected a str"):
        normalize(None, style)
    with pytest.raises(ValueError, match="unknown scoring unit"):
        tokenize("x", style, unit="phone")


def test_unknown_style():
    with pytest.raises(ValueError, match="unknown normalisation style 'kaldi'"):
        normalize("x", "kaldi")


def test_whisper_english_is_openais_rules_not_the_packages_additions():
    # whisper-normalizer adds contractions OpenAI's EnglishTextNormalizer does not have
    assert normalize("the cause is kinda sorta odd, dunno", "whisper_english") == "the cause is kinda sorta odd dunno"
    # a sign not joined to its number is dropped, as by OpenAI's rules
    assert normalize("it cost $ 20, up 5 %", "whisper_english") == "it cost 20 up 5"
    assert normalize("a $ sign and a % sign", "whisper_english") == "a sign and a sign"


@pytest.mark.parametrize("text", [
    "it cost $ 20, up 5 %", "$20 and 5%", "the cause is kinda sorta odd, dunno", "twenty dollars and five cents",
    "I'm gonna colour the centre", "Mr. Smith's 1st and 2nd", "one hundred and twenty-three point five",
    "uh um hmm yeah", "[laughs] (noise) hello <unk>", "It's 3:45 p.m.", "I can't, won't", "costs €5 or 5€",
    "¢50", "1,000,000 people", "double seven", "twenty twenty two", "the 90s", "a $5 bill", "five percent",
    "one and a half", "Organise the theatre's programme",
])
def test_whisper_english_equals_the_copy_of_openais_normaliser_in_transformers(text):
    import json
    from importlib.resources import files

    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    spellings = json.loads(files("whisper_normalizer").joinpath("normalizers/english.json").read_text())
    assert normalize(text, "whisper_english") == EnglishTextNormalizer(spellings)(text).strip()
