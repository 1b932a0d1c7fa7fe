"""Non-speech clips of the mini corpus, synthesised with sox: beeps, noise and melodies.

Every clip has a kind and a loudness (peak -1..-6 dBFS for "loud", -28..-34 dBFS for "soft"),
plus one fact of its kind, so each clip answers several questions:

- ``beeps``: 1-4 sine beeps (``beeps`` = "one".."four") at a low (200-350 Hz) or high
  (1500-3000 Hz) ``tone``;
- ``noise``: white, pink or brown ``noise`` for 1-2.5 s;
- ``melody``: 4-5 sine notes 2-4 semitones apart, ``melody`` = "rising" or "falling".

``sound_command`` draws the continuous details (frequencies, durations, levels) around those
labels; the labels alone decide every answer.
"""
NUMBER_WORDS = ("one", "two", "three", "four")
TONE_HZ = {"low": (200, 350), "high": (1500, 3000)}
LEVEL_DB = {"loud": (1, 6), "soft": (28, 34)}
NOISE_COLOURS = ("white", "pink", "brown")
MELODY_DIRECTIONS = ("rising", "falling")
KIND_FACTS = {
    "beeps": {"beeps": NUMBER_WORDS, "tone": tuple(TONE_HZ)},
    "noise": {"noise": NOISE_COLOURS},
    "melody": {"melody": MELODY_DIRECTIONS},
}

_SOX_OUT = ("sox", "-R", "-D", "-V1", "-n", "-r", "16000", "-c", "1", "-b", "16")


def _ms(seconds):
    """Seconds as sox reads them, rounded to the millisecond."""
    return f"{seconds:.3f}"


def _tone(freq_hz, dur_s, level_db):
    """sox effects making one sine tone with 10 ms fades, peaking ``level_db`` below full scale."""
    return ["synth", _ms(dur_s), "sine", f"{freq_hz:.0f}", "fade", "q", "0.010", _ms(dur_s),
            "0.010", "gain", f"-{level_db:g}"]


def beeps_argv(count, freq_hz, beep_s, gap_s, lead_s, level_db, out_path):
    """sox command line for ``count`` sine beeps, each followed by a silence.

    Arguments
    ---------
    count : int
        Number of beeps, at least 1.
    freq_hz : float
        Beep frequency.
    beep_s, gap_s, lead_s : float
        Beep length, silence after each beep and silence before the first, in seconds.
    level_db : float
        Peak level below full scale, in dB (positive).
    out_path : str
        The wav to write.

    Returns
    -------
    list of str

    Example
    -------
    >>> " ".join(beeps_argv(3, 440, 0.1, 0.2, 0.05, 6, "b.wav")[11:])
    'b.wav synth 0.100 sine 440 fade q 0.010 0.100 0.010 gain -6 pad 0 0.200 repeat 2 pad 0.050 0'
    """
    repeat = ["repeat", str(count - 1)] if count > 1 else []
    return [*_SOX_OUT, out_path, *_tone(freq_hz, beep_s, level_db), "pad", "0", _ms(gap_s),
            *repeat, "pad", _ms(lead_s), "0"]


def noise_argv(colour, dur_s, offset_s, level_db, out_path):
    """sox command line for coloured noise, peak-normalised.

    sox's noise generator restarts from the same seed in repeatable mode, so the clip skips
    ``offset_s`` seconds of it: clips of the same length then still differ.

    Arguments
    ---------
    colour : str
        ``"white"``, ``"pink"`` or ``"brown"``.
    dur_s, offset_s : float
        Clip length and how much generated noise to skip first, in seconds.
    level_db : float
        Peak level below full scale, in dB (positive).
    out_path : str
        The wav to write.

    Returns
    -------
    list of str

    Example
    -------
    >>> " ".join(noise_argv("pink", 1.5, 0.25, 30, "n.wav")[11:])
    'n.wav synth 1.750 pinknoise trim 0.250 fade q 0.050 1.500 0.050 norm -30'
    """
    if colour not in NOISE_COLOURS:
        raise ValueError(f"noise colour {colour!r} is not one of {NOISE_COLOURS}")
    return [*_SOX_OUT, out_path, "synth", _ms(dur_s + offset_s), f"{colour}noise",
            "trim", _ms(offset_s), "fade", "q", "0.050", _ms(dur_s), "0.050",
            "norm", f"-{level_db:g}"]


def melody_freqs(start_hz, step_semitones, n_notes, direction):
    """Frequencies of an evenly stepped melody.

    Arguments
    ---------
    start_hz : float
        The lowest note.
    step_semitones : int
        Interval between consecutive notes.
    n_notes : int
        How many notes.
    direction : str
        ``"rising"`` (lowest first) or ``"falling"`` (highest first).

    Returns
    -------
    list of float

    Example
    -------
    >>> [round(f) for f in melody_freqs(220, 12, 3, "falling")]
    [880, 440, 220]
    """
    if direction not in MELODY_DIRECTIONS:
        raise ValueError(f"melody direction {direction!r} is not one of {MELODY_DIRECTIONS}")
    freqs = [start_hz * 2 ** (i * step_semitones / 12) for i in range(n_notes)]
    return freqs if direction == "rising" else freqs[::-1]


def melody_argv(freqs, note_s, lead_s, level_db, out_path):
    """sox command line playing sine notes one after another (one sox effects chain per note).

    Arguments
    ---------
    freqs : list of float
        Note frequencies in playing order.
    note_s, lead_s : float
        Note length and silence before the first note, in seconds.
    level_db : float
        Peak level below full scale, in dB (positive).
    out_path : str
        The wav to write.

    Returns
    -------
    list of str

    Example
    -------
    >>> " ".join(melody_argv([300, 400], 0.2, 0.1, 3, "m.wav")[11:])  # doctest: +ELLIPSIS
    'm.wav synth 0.200 sine 300 ... gain -3 pad 0.100 0 : synth 0.200 sine 400 ... gain -3'
    """
    argv = [*_SOX_OUT, out_path]
    for i, freq in enumerate(freqs):
        argv += [":"] if i else []
        argv += _tone(freq, note_s, level_db)
        argv += ["pad", _ms(lead_s), "0"] if i == 0 else []
    return argv


def sound_command(rng, labels, out_path):
    """Draw the details of one clip around its labels and return the sox command that makes it.

    Arguments
    ---------
    rng : random.Random
        The generator to draw from.
    labels : dict of str to str
        ``kind`` and ``loudness``, plus ``beeps`` and ``tone`` (beeps), ``noise`` (noise) or
        ``melody`` (melody).
    out_path : str
        The wav to write.

    Returns
    -------
    list of str

    Example
    -------
    >>> import random
    >>> labels = {"kind": "beeps", "loudness": "soft", "beeps": "two", "tone": "high"}
    >>> argv = sound_command(random.Random(0), labels, "x.wav")
    >>> argv[argv.index("repeat") + 1], float(argv[argv.index("sine") + 1]) >= 1500
    ('1', True)
    """
    level_db = round(rng.uniform(*LEVEL_DB[labels["loudness"]]), 1)
    kind = labels["kind"]
    if kind == "beeps":
        return beeps_argv(NUMBER_WORDS.index(labels["beeps"]) + 1,
                          rng.uniform(*TONE_HZ[labels["tone"]]), rng.uniform(0.1, 0.2),
                          rng.uniform(0.15, 0.3), rng.uniform(0.05, 0.4), level_db, out_path)
    if kind == "noise":
        return noise_argv(labels["noise"], rng.uniform(1.0, 2.5), rng.uniform(0.0, 2.0),
                          level_db, out_path)
    if kind == "melody":
        freqs = melody_freqs(rng.uniform(220, 600), rng.randint(2, 4), rng.randint(4, 5),
                             labels["melody"])
        return melody_argv(freqs, rng.uniform(0.15, 0.3), rng.uniform(0.05, 0.4), level_db,
                           out_path)
    raise ValueError(f"sound kind {kind!r} is not one of {tuple(KIND_FACTS)}")
