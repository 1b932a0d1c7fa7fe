"""Who speaks in the mini corpus: espeak-ng voices, their gender, and how rate and pitch are set.

A voice is an espeak-ng language voice (the accent) plus a variant (the timbre): variants ``f*``
are female and ``m*`` male. Train, dev and test use disjoint voices; the dev voices speak a
Lancashire accent and the test voices a West Midlands one, neither heard in training, and the
``f5``, ``m5`` and ``m8`` variants never speak in train either.

Speaking rate is slow (110-125 words per minute) or fast (210-240). Pitch is low or high for
the speaker's gender: espeak's ``-p`` scales the variant's own pitch range, so a high male voice
(about 120-150 Hz) stays below a high female one (about 280-320 Hz), and a low female voice
(about 140-180 Hz) above a low male one (about 80-90 Hz).
"""
from dataclasses import dataclass

ACCENTS = {
    "us": "en-us",
    "gb": "en-gb",
    "sc": "en-gb-scotland",
    "rp": "en-gb-x-rp",
    "ca": "en-029",
    "ny": "en-us-nyc",
    "la": "en-gb-x-gbclan",
    "wm": "en-gb-x-gbcwmd",
}

RATE_WPM = {"slow": (110, 125), "fast": (210, 240)}

# espeak-ng -p (0-99) ranges for (gender, pitch label)
PITCH_PARAM = {
    ("male", "low"): (5, 20),
    ("male", "high"): (70, 85),
    ("female", "low"): (15, 30),
    ("female", "high"): (80, 95),
}


@dataclass(frozen=True)
class Voice:
    """One speaker: an espeak-ng accent plus a variant.

    Arguments
    ---------
    accent : str
        A key of ``ACCENTS`` (e.g. ``"us"``).
    variant : str
        An espeak-ng variant name, ``f1``..``f5`` (female) or ``m1``..``m8`` (male).

    Example
    -------
    >>> voice = Voice("sc", "f3")
    >>> voice.spk, voice.espeak_name, voice.gender
    ('sc_f3', 'en-gb-scotland+f3', 'female')
    """

    accent: str
    variant: str

    def __post_init__(self):
        if self.accent not in ACCENTS:
            raise ValueError(f"unknown accent {self.accent!r}; known: {sorted(ACCENTS)}")
        if self.variant[:1] not in ("f", "m"):
            raise ValueError(f"variant {self.variant!r} must start with f (female) or m (male)")

    @property
    def spk(self):
        """The speaker id used in utt2spk: ``<accent>_<variant>``."""
        return f"{self.accent}_{self.variant}"

    @property
    def espeak_name(self):
        """The argument of ``espeak-ng -v``."""
        return f"{ACCENTS[self.accent]}+{self.variant}"

    @property
    def gender(self):
        """``"female"`` for ``f*`` variants, ``"male"`` for ``m*`` ones."""
        return "female" if self.variant.startswith("f") else "male"


def _voices(pairs):
    return tuple(Voice(*pair.split("_")) for pair in pairs.split())


VOICES = {
    "train": _voices("us_f1 us_m1 gb_f2 gb_m2 sc_f3 sc_m3 rp_f4 rp_m4 "
                     "ca_f2 ca_m6 ny_f1 ny_m7 us_f4 gb_m3 rp_f3 ca_m1"),
    "dev": _voices("la_f5 la_m5"),
    "test": _voices("wm_f5 wm_m8 wm_f2 wm_m1"),
}


def speech_commands(voice, sentence, wpm, pitch_param, level_db, out_path):
    """Build the espeak-ng and sox command lines that speak one sentence into a wav file.

    espeak-ng writes a 22.05 kHz wav to stdout; sox reads it from stdin, lowers it 6 dB so the
    resampler cannot clip, resamples to 16 kHz and peak-normalises to ``-level_db`` dBFS.

    Arguments
    ---------
    voice : Voice
        The speaker.
    sentence : str
        The words to say.
    wpm : int
        Speaking rate in words per minute (espeak-ng ``-s``).
    pitch_param : int
        espeak-ng ``-p`` value, 0-99.
    level_db : float
        Peak level below full scale, in dB (positive).
    out_path : str
        The 16 kHz mono 16-bit wav to write.

    Returns
    -------
    tuple of (list of str, list of str)
        The espeak-ng argv and the sox argv; pipe the first's stdout into the second.

    Example
    -------
    >>> espeak, sox = speech_commands(Voice("us", "m1"), "she runs", 220, 10, 3.0, "a.wav")
    >>> espeak
    ['espeak-ng', '-v', 'en-us+m1', '-s', '220', '-p', '10', '-z', '--stdout', 'she runs']
    >>> sox[-6:]
    ['gain', '-6', 'rate', '16000', 'norm', '-3.0']
    """
    espeak = ["espeak-ng", "-v", voice.espeak_name, "-s", str(wpm), "-p", str(pitch_param), "-z",
              "--stdout", sentence]
    sox = ["sox", "-R", "-D", "-V1", "-t", "wav", "-", "-c", "1", "-b", "16", out_path,
           "gain", "-6", "rate", "16000", "norm", f"-{level_db}"]
    return espeak, sox
