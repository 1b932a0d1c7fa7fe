"""The mini corpus's language: an 80-word vocabulary, a 3-6 word grammar and a sentence split.

Sentences are drawn from seven templates over word classes. Every word class is small, so a tiny
model sees each word about a hundred times in 2,000 training sentences, and the templates keep
the word order predictable. `split_sentences` hands out distinct sentences, so the sentences of
dev and test never occur in train even though they use the same words.
"""
import math
import random

WORD_CLASSES = {
    "det": ("the", "this", "that", "my", "every"),
    "adj": ("red", "blue", "green", "small", "big", "old", "young", "happy", "quiet",
            "bright", "dark", "little", "warm", "tall"),
    "noun": ("dog", "cat", "bird", "horse", "child", "farmer", "teacher", "boat", "train",
             "girl", "boy", "fish", "baby", "doctor", "sailor", "rabbit", "king", "queen"),
    "verb": ("runs", "sleeps", "jumps", "sings", "waits", "falls", "swims", "turns", "stops",
             "moves", "walks", "rests", "plays", "smiles", "laughs"),
    "adv": ("quickly", "slowly", "loudly", "quietly", "today", "again", "outside", "early",
            "later", "softly"),
    "prep": ("near", "under", "behind", "over", "beside", "inside"),
    "place": ("house", "river", "garden", "window", "tree", "bridge", "road", "hill", "lake"),
    "pron": ("he", "she", "it"),
}

TEMPLATES = (
    ("pron", "verb", "adv"),
    ("det", "noun", "verb"),
    ("det", "noun", "verb", "adv"),
    ("det", "adj", "noun", "verb"),
    ("det", "adj", "noun", "verb", "adv"),
    ("pron", "verb", "prep", "det", "place"),
    ("det", "noun", "verb", "prep", "det", "place"),
)


def vocabulary():
    """Return the sorted set of words the grammar can produce.

    Returns
    -------
    list of str
        Every word of every class, sorted, without repeats.

    Example
    -------
    >>> words = vocabulary()
    >>> len(words)
    80
    >>> "teacher" in words
    True
    """
    return sorted({word for words in WORD_CLASSES.values() for word in words})


def random_sentence(rng):
    """Draw one sentence: a template uniformly at random, then one word per slot.

    Arguments
    ---------
    rng : random.Random
        The generator to draw from.

    Returns
    -------
    str
        Lower-case words separated by single spaces, 3 to 6 of them.

    Example
    -------
    >>> sentence = random_sentence(random.Random(0))
    >>> 3 <= len(sentence.split()) <= 6
    True
    >>> set(sentence.split()) <= set(vocabulary())
    True
    """
    template = rng.choice(TEMPLATES)
    return " ".join(rng.choice(WORD_CLASSES[slot]) for slot in template)


def split_sentences(rng, sizes):
    """Draw distinct sentences and deal them out to several sets.

    Arguments
    ---------
    rng : random.Random
        The generator to draw from.
    sizes : dict of str to int
        How many sentences each set gets, in dealing order (e.g. train, dev, test).

    Returns
    -------
    dict of str to list of str
        The sentences of each set, in drawing order; no sentence appears twice anywhere.

    Example
    -------
    >>> sets = split_sentences(random.Random(0), {"train": 50, "test": 10})
    >>> len(sets["train"]), len(sets["test"])
    (50, 10)
    >>> set(sets["train"]) & set(sets["test"])
    set()
    """
    capacity = sum(math.prod(len(WORD_CLASSES[slot]) for slot in template)
                   for template in TEMPLATES)
    total = sum(sizes.values())
    if total > capacity // 2:
        raise ValueError(
            f"{total} distinct sentences requested; the grammar makes at most {capacity}, "
            "ask for fewer utterances"
        )
    drawn, seen = [], set()
    while len(drawn) < total:
        sentence = random_sentence(rng)
        if sentence not in seen:
            seen.add(sentence)
            drawn.append(sentence)
    sets, start = {}, 0
    for name, size in sizes.items():
        sets[name] = drawn[start:start + size]
        start += size
    return sets
