"""What the mini corpus asks about each clip: ASR, 4-way multiple choice and short open questions.

Each property a clip can be asked about has its possible values, distractors that complete the
four choices of a multiple-choice question (plausible words that are never the right answer),
and a few phrasings. ``clip_rows`` turns one clip's facts into rows of ``tasks.jsonl`` (the
contract of ``diffa.data.tasks``); every row carries all the clip's facts in ``labels`` plus
``asks``, the property its answer states, so a wrong answer can be written by swapping that one
fact for another value of the same property.
"""
from dataclasses import dataclass

ASR_INSTRUCTIONS = (
    "Transcribe the speech.",
    "What is being said in this audio?",
    "Write down what the speaker says.",
    "Please transcribe this recording.",
    "Convert the speech to text.",
    "What does the speaker say?",
    "Give the transcript of this audio.",
    "Repeat exactly what you hear.",
    "Transcribe the audio into text.",
    "Write out the spoken words.",
    "What words are spoken?",
    "Provide a transcription of the speech.",
    "Listen and write down the sentence.",
    "Recognize the speech and output the text.",
    "What sentence is spoken in the audio?",
    "Transcribe what you hear, word for word.",
)


@dataclass(frozen=True)
class Property:
    """One askable property of a clip.

    Arguments
    ---------
    values : tuple of str
        The values clips really have.
    distractors : tuple of str
        Never-true values that fill the multiple-choice options up to four.
    mcq : tuple of str
        Question phrasings for multiple choice (the options are appended).
    open : tuple of str
        Question phrasings for open answers (the answer is one of ``values``).

    Example
    -------
    >>> PROPERTIES["noise"].choices
    ('white', 'pink', 'brown', 'blue')
    """

    values: tuple
    distractors: tuple
    mcq: tuple
    open: tuple

    @property
    def choices(self):
        """The four multiple-choice options, values first."""
        return self.values + self.distractors


PROPERTIES = {
    "gender": Property(
        ("male", "female"), ("child", "unknown"),
        ("What is the gender of the speaker?", "Which best describes the speaker's voice?"),
        ("Is the speaker male or female?", "What is the speaker's gender, male or female?")),
    "rate": Property(
        ("slow", "fast"), ("moderate", "varying"),
        ("How fast does the speaker talk?", "What is the speaking rate?"),
        ("Is the speech slow or fast?", "Does the speaker talk slow or fast?")),
    "pitch": Property(
        ("low", "high"), ("medium", "varying"),
        ("What is the pitch of the speaker's voice?", "How high is the speaker's voice?"),
        ("Is the speaker's voice low or high?", "Is the voice pitched low or high?")),
    "kind": Property(
        ("beeps", "noise", "melody"), ("speech",),
        ("What kind of sound is this?", "What can be heard in this clip?"),
        ("What kind of sound is this: beeps, noise or melody?",
         "Is this beeps, noise or a melody?")),
    "beeps": Property(
        ("one", "two", "three", "four"), (),
        ("How many beeps are there?", "How many times does it beep?"),
        ("How many beeps are there?", "Count the beeps. How many are there?")),
    "tone": Property(
        ("low", "high"), ("medium", "sweeping"),
        ("What is the pitch of the beeps?", "How high are the beeps?"),
        ("Are the beeps low or high?", "Is the beep tone low or high?")),
    "noise": Property(
        ("white", "pink", "brown"), ("blue",),
        ("What colour is the noise?", "Which kind of noise is this?"),
        ("What colour is the noise?", "Is this white, pink or brown noise?")),
    "melody": Property(
        ("rising", "falling"), ("flat", "random"),
        ("Which way does the melody move?", "How does the melody go?"),
        ("Is the melody rising or falling?", "Does the melody rise or fall?")),
    "loudness": Property(
        ("loud", "soft"), ("medium", "silent"),
        ("How loud is the sound?", "What is the volume of this clip?"),
        ("Is the sound loud or soft?", "Is this clip loud or soft?")),
}


def mcq_row(rng, prop, value):
    """A multiple-choice question about one property: shuffled options, gold index, answer text.

    Arguments
    ---------
    rng : random.Random
        Draws the phrasing and the option order.
    prop : str
        A key of ``PROPERTIES``.
    value : str
        The clip's true value.

    Returns
    -------
    dict
        ``instruction`` (question plus "(A) ... (D) ..."), ``answer``, ``choices`` and ``gold``.

    Example
    -------
    >>> import random
    >>> row = mcq_row(random.Random(0), "melody", "falling")
    >>> row["choices"][row["gold"]] == row["answer"] == "falling", len(row["choices"])
    (True, 4)
    >>> "(D) " in row["instruction"]
    True
    """
    spec = PROPERTIES[prop]
    if value not in spec.values:
        raise ValueError(f"{prop}={value!r} is not one of {spec.values}")
    choices = list(spec.choices)
    rng.shuffle(choices)
    options = " ".join(f"({letter}) {choice}" for letter, choice in zip("ABCD", choices))
    return {"instruction": f"{rng.choice(spec.mcq)} Choices: {options}", "answer": value,
            "choices": choices, "gold": choices.index(value)}


def clip_rows(rng, utt, facts, asked, source):
    """All task rows of one clip: ASR when it has a sentence, one MCQ per asked property, and
    one open question about a property drawn at random.

    Arguments
    ---------
    rng : random.Random
        Draws phrasings, option orders and the open question's property.
    utt : str
        The utterance id.
    facts : dict of str to str
        Everything true about the clip (copied into each row's ``labels``); ``sentence`` is the
        transcript of speech clips.
    asked : tuple of str
        The properties to ask about, keys of both ``facts`` and ``PROPERTIES``.
    source : str
        The corpus name for the ``source`` field.

    Returns
    -------
    list of dict
        Rows with ids ``<utt>-<task>-<n>``.

    Example
    -------
    >>> import random
    >>> facts = {"kind": "noise", "noise": "pink", "loudness": "soft"}
    >>> rows = clip_rows(random.Random(0), "sound-dev-00001", facts, ("noise", "loudness"), "mini")
    >>> [row["id"] for row in rows]
    ['sound-dev-00001-mcq-0', 'sound-dev-00001-mcq-1', 'sound-dev-00001-open_qa-0']
    >>> rows[0]["answer"], rows[0]["labels"]["asks"]
    ('pink', 'noise')
    """
    def row(task, n, instruction, answer, asks=None, **extra):
        labels = dict(facts, asks=asks) if asks else dict(facts)
        return {"id": f"{utt}-{task}-{n}", "utt": utt, "task": task, "instruction": instruction,
                "answer": answer, **extra, "labels": dict(sorted(labels.items())),
                "source": source}

    rows = []
    if "sentence" in facts:
        rows.append(row("asr", 0, rng.choice(ASR_INSTRUCTIONS), facts["sentence"]))
    for n, prop in enumerate(asked):
        mcq = mcq_row(rng, prop, facts[prop])
        rows.append(row("mcq", n, mcq.pop("instruction"), mcq.pop("answer"), prop, **mcq))
    prop = rng.choice(asked)
    rows.append(row("open_qa", 0, rng.choice(PROPERTIES[prop].open), facts[prop], prop))
    return rows
