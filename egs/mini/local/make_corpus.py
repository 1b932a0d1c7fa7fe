#!/usr/bin/env python3
"""Build the synthetic audio-understanding corpus of egs/mini with espeak-ng and sox.

Usage:
  local/make_corpus.py --datadir data --seed 0 --nj 2
  local/make_corpus.py --datadir data --n_train 40 --n_sound_train 12   # a reduced corpus

Writes, for each set in train, dev and test, a Kaldi data directory
``<datadir>/<set>/{wav.scp,text,utt2spk,spk2utt,utt2dur,tasks.jsonl,.done}`` and its 16 kHz
mono 16-bit wavs under ``<datadir>/local/wav/<set>/``. Then it splits train's tasks as DIFFA-2's
curriculum has its data (utils/subset_data_dir.py --tasks, the same clips): ``train_asr`` (the
transcripts, replayed at 5% in stages 4-5) and ``train_qa`` (the questions). wav.scp holds ``<datadir>/local/wav/...``
as given, so a relative ``--datadir`` gives paths relative to the current directory.

Speech clips say a 3-6 word sentence (local/sentences.py) in an espeak-ng voice at a slow or fast
rate and a low or high pitch (local/voices.py); dev and test use voices and sentences never seen
in train. Sound clips are beeps, coloured noise or melodies (local/sounds.py). Every clip gets
task rows (local/questions.py): ASR for speech, one 4-way MCQ per property, one open question.
Each label is balanced: its values are dealt out in shuffled rounds.

The same options give byte-identical outputs; --nj only sets how many processes synthesise.
Wavs are synthesised under ``<datadir>/local/wav.tmp`` and renamed into place, and each data
directory is swapped in whole (diffa.data.corpora.datadir), ``.done`` last. A rerun with the same
options whose ``.done`` files (the three sets' and the two subsets') are present returns at once. Needs the diffa package (run
from the recipe, whose path.sh activates the environment, or after ``. tools/activate.sh``).
"""
import argparse
import collections
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from diffa.data.corpora.datadir import Entry, write_data_dir
from diffa.data.kaldi import read_map
from questions import clip_rows
from sentences import split_sentences
from sounds import KIND_FACTS, LEVEL_DB, sound_command
from voices import PITCH_PARAM, RATE_WPM, VOICES, speech_commands

SETS = ("train", "dev", "test")
SUBSETS = {"train_asr": ("train", "asr"), "train_qa": ("train", "mcq,open_qa")}  # name: (source set, tasks)
SUBSET_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "utils", "subset_data_dir.py")
SOURCE = "diffa-mini"
SPEECH_ASKED = ("gender", "rate", "pitch")


@dataclass
class Clip:
    """One clip to synthesise: ids, transcript, facts, what to ask, and the commands (a pipeline)
    that write its wav."""

    utt: str
    spk: str
    text: str
    facts: dict
    asked: tuple
    wav: str
    commands: list


def get_parser():
    """The command line of this script (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="local/data.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datadir", default="data", help="where to write the data directories")
    parser.add_argument("--seed", type=int, default=0, help="decides every random choice")
    parser.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    for name, speech, sound in (("train", 2000, 900), ("dev", 150, 60), ("test", 300, 150)):
        parser.add_argument(f"--n_{name}", type=int, default=speech,
                            help=f"speech utterances in {name} (default %(default)s)")
        parser.add_argument(f"--n_sound_{name}", type=int, default=sound,
                            help=f"sound clips in {name} (default %(default)s)")
    return parser


def balanced(rng, values, n):
    """Deal ``n`` values in shuffled rounds that each hold every value once, then shuffle.

    Arguments
    ---------
    rng : random.Random
        The generator to draw from.
    values : sequence
        What to deal out.
    n : int
        How many to deal.

    Returns
    -------
    list
        ``n`` items; each value appears ``n // len(values)`` times or once more.

    Example
    -------
    >>> items = balanced(random.Random(0), ["a", "b"], 5)
    >>> len(items), sorted(set(items)), abs(items.count("a") - items.count("b"))
    (5, ['a', 'b'], 1)
    """
    items = []
    while len(items) < n:
        items += rng.sample(values, len(values))
    items = items[:n]
    rng.shuffle(items)
    return items


def plan_speech(rng, voices, sentences, wavdir):
    """Plan one speech clip per sentence, with voices, rates and pitches each balanced.

    Arguments
    ---------
    rng : random.Random
        Draws the labels and the exact rate, pitch and level of each clip.
    voices : sequence of Voice
        The set's speakers.
    sentences : list of str
        The set's sentences, one clip each.
    wavdir : str
        Where the commands write the wavs.

    Returns
    -------
    list of Clip
        Utterance ids ``<spk>-<index>``.

    Example
    -------
    >>> clips = plan_speech(random.Random(0), VOICES["dev"], ["he runs", "she sings"], "w")
    >>> sorted(clip.spk for clip in clips), sorted(clip.facts["rate"] for clip in clips)
    (['la_f5', 'la_m5'], ['fast', 'slow'])
    >>> clips[0].utt, clips[0].commands[0][:3], clips[0].wav
    ('la_f5-00000', ['espeak-ng', '-v', 'en-gb-x-gbclan+f5'], 'w/la_f5-00000.wav')
    """
    n = len(sentences)
    draws = zip(sentences, balanced(rng, voices, n), balanced(rng, tuple(RATE_WPM), n),
                balanced(rng, ("low", "high"), n))
    clips = []
    for i, (sentence, voice, rate, pitch) in enumerate(draws):
        utt = f"{voice.spk}-{i:05d}"
        wav = os.path.join(wavdir, f"{utt}.wav")
        commands = speech_commands(voice, sentence, rng.randint(*RATE_WPM[rate]),
                                   rng.randint(*PITCH_PARAM[voice.gender, pitch]),
                                   round(rng.uniform(*LEVEL_DB["loud"]), 1), wav)
        facts = {"kind": "speech", "gender": voice.gender, "rate": rate, "pitch": pitch,
                 "voice": voice.spk, "accent": voice.accent, "sentence": sentence}
        clips.append(Clip(utt, voice.spk, sentence, facts, SPEECH_ASKED, wav, list(commands)))
    return clips


def plan_sounds(rng, n, set_name, wavdir):
    """Plan ``n`` sound clips with kinds, loudness, and each fact within a kind balanced.

    Arguments
    ---------
    rng : random.Random
        Draws the labels and the details of each clip.
    n : int
        How many clips.
    set_name : str
        The set they belong to, part of their ids: no utterance id is shared by two sets (speech
        ids differ already, since each set has its own voices), so features or tasks of one set
        cannot pass for another's.
    wavdir : str
        Where the commands write the wavs.

    Returns
    -------
    list of Clip
        Speaker ``sound``, utterance ids ``sound-<set_name>-<index>``, transcript ``<nospeech>``.

    Example
    -------
    >>> clips = plan_sounds(random.Random(0), 6, "dev", "w")
    >>> sorted(clip.facts["kind"] for clip in clips)
    ['beeps', 'beeps', 'melody', 'melody', 'noise', 'noise']
    >>> sorted(clip.asked for clip in clips)[0]
    ('kind', 'beeps', 'tone', 'loudness')
    """
    kinds = balanced(rng, tuple(KIND_FACTS), n)
    loudness = balanced(rng, tuple(LEVEL_DB), n)
    draws = {kind: [dict(zip(facts, values)) for values in zip(
                 *(balanced(rng, facts[name], kinds.count(kind)) for name in facts))]
             for kind, facts in KIND_FACTS.items()}
    clips = []
    for i, kind in enumerate(kinds):
        facts = {"kind": kind, **draws[kind].pop(), "loudness": loudness[i]}
        utt = f"sound-{set_name}-{i:05d}"
        wav = os.path.join(wavdir, f"{utt}.wav")
        asked = ("kind", *KIND_FACTS[kind], "loudness")
        clips.append(Clip(utt, "sound", "<nospeech>", facts, asked, wav,
                          [sound_command(rng, facts, wav)]))
    return clips


def run_commands(commands):
    """Run command lines as a pipeline, each one's stdout feeding the next one's stdin.

    Arguments
    ---------
    commands : list of list of str
        The argvs, in pipeline order.

    Returns
    -------
    str or None
        None when every command exited 0, else what failed and its stderr.

    Example
    -------
    >>> run_commands([["echo", "hi"], ["grep", "-q", "hi"]]) is None
    True
    >>> run_commands([["echo", "hi"], ["grep", "-q", "ho"]])
    '`grep -q ho` exited 1: '
    """
    procs = []
    for argv in commands:
        stdin = procs[-1].stdout if procs else subprocess.DEVNULL
        procs.append(subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
        if stdin is not subprocess.DEVNULL:
            stdin.close()  # the next process owns the pipe now
    errors = []
    for argv, proc in zip(commands, procs):
        _, err = proc.communicate()
        if proc.returncode:
            errors.append(f"`{' '.join(argv)}` exited {proc.returncode}: {err.decode().strip()}")
    return "; ".join(errors) or None


def _run_clip(clip):
    return clip.utt, run_commands(clip.commands)


def synthesise(clips, nj):
    """Run every clip's commands, ``nj`` clips at a time.

    Arguments
    ---------
    clips : list of Clip
        What to make.
    nj : int
        Parallel processes (1: run in this process).

    Raises
    ------
    RuntimeError
        Naming how many clips failed and the first failure (utt, command, stderr).

    Example
    -------
    >>> clip = Clip("u-1", "u", "<nospeech>", {}, (), "u-1.wav", [["false"]])
    >>> synthesise([clip], nj=1)
    Traceback (most recent call last):
    ...
    RuntimeError: synthesis failed for 1 clips, first: u-1: `false` exited 1:
    """
    if nj > 1:
        with multiprocessing.Pool(nj) as pool:
            results = list(pool.imap_unordered(_run_clip, clips, chunksize=16))
    else:
        results = [_run_clip(clip) for clip in clips]
    failed = [f"{utt}: {err}" for utt, err in results if err]
    if failed:
        raise RuntimeError(f"synthesis failed for {len(failed)} clips, first: {failed[0]}")


def write_set(setdir, clips, final_wavdir, rng):
    """Write one set's Kaldi files and tasks.jsonl through diffa's data-dir writer, which sorts,
    checks and swaps the directory in whole.

    Arguments
    ---------
    setdir : str
        ``<datadir>/<set>``.
    clips : list of Clip
        The set's clips, already synthesised into ``final_wavdir``.
    final_wavdir : str
        The folder of the wavs, as wav.scp should name it.
    rng : random.Random
        Draws the task rows' phrasings and option orders.

    Returns
    -------
    tuple of (list of dict, dict of str to float)
        The task rows, and each utterance's duration in seconds.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> clips = plan_sounds(random.Random(0), 2, "dev", d)
    >>> synthesise(clips, nj=1)
    >>> rows, durations = write_set(f"{d}/set", clips, d, random.Random(0))
    >>> len(rows), sorted(durations), all(0.5 < dur < 4 for dur in durations.values())
    (8, ['sound-dev-00000', 'sound-dev-00001'], True)
    >>> print(open(f"{d}/set/text").read(), end="")
    sound-dev-00000 <nospeech>
    sound-dev-00001 <nospeech>
    """
    entries = []
    for clip in clips:
        path = os.path.join(final_wavdir, f"{clip.utt}.wav")
        for row in clip_rows(rng, clip.utt, clip.facts, clip.asked, SOURCE):
            entries.append(Entry(clip.utt, path, clip.text, row, f"{setdir}: {clip.utt}", clip.spk))
    written = write_data_dir(setdir, entries)
    if written.dropped:
        raise RuntimeError(f"{setdir}: wavs missing after synthesis for {written.dropped[:5]}")
    return [entry.row for entry in entries], read_map(os.path.join(setdir, "utt2dur"), float)


def _summary(name, clips, rows, durations):
    """A few lines describing one set: sizes, durations, task counts and label balance."""
    speech = [c for c in clips if c.spk != "sound"]
    durs = list(durations.values())
    lines = [f"{name}: {len(speech)} speech utts ({len({c.spk for c in speech})} voices) + "
             f"{len(clips) - len(speech)} sound clips, {sum(durs) / 3600:.2f} h, "
             f"clip length {min(durs):.2f}-{max(durs):.2f} s"]
    tasks = collections.Counter(row["task"] for row in rows)
    lines.append("  tasks: " + ", ".join(f"{t} {n}" for t, n in sorted(tasks.items())))
    facts = collections.defaultdict(collections.Counter)
    for clip in clips:
        for key, value in clip.facts.items():
            if key not in ("sentence", "voice", "accent"):
                facts[key][value] += 1
    for key, counts in sorted(facts.items()):
        lines.append(f"  {key}: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
    return "\n".join(lines)


def _mark_done(setdir, stamp):
    """Write ``<setdir>/.done`` (the options' ``stamp``) atomically: the set is complete."""
    with open(f"{setdir}/.done.tmp", "w", encoding="utf-8") as f:
        f.write(stamp + "\n")
    os.rename(f"{setdir}/.done.tmp", f"{setdir}/.done")


def _is_built(done_files, stamp):
    """True when every ``.done`` file exists and records ``stamp``."""
    for path in done_files:
        if not os.path.isfile(path):
            return False
        with open(path, encoding="utf-8") as f:
            if f.read().strip() != stamp:
                return False
    return True


def main():
    """Plan, synthesise and write the corpus; print a summary of each set."""
    args = get_parser().parse_args()
    if args.nj < 1:
        raise ValueError(f"--nj must be at least 1, got {args.nj}")
    sizes = {name: (getattr(args, f"n_{name}"), getattr(args, f"n_sound_{name}")) for name in SETS}
    if any(n < 0 for pair in sizes.values() for n in pair) or not all(sum(sizes[s]) for s in SETS):
        raise ValueError(f"every set needs some clips and no count may be negative, got {sizes}")
    stamp = json.dumps({"seed": args.seed, "sizes": sizes}, sort_keys=True)
    done_files = [os.path.join(args.datadir, name, ".done") for name in (*SETS, *SUBSETS)]
    if _is_built(done_files, stamp):
        print(f"{args.datadir}: corpus already built with these options; remove it to rebuild")
        return
    for path in done_files:  # from here on the old corpus is incomplete
        if os.path.exists(path):
            os.remove(path)

    start = time.time()
    tmp_wav = os.path.join(args.datadir, "local", "wav.tmp")
    shutil.rmtree(tmp_wav, ignore_errors=True)
    sentences = split_sentences(random.Random(f"{args.seed}:sentences"),
                                {name: sizes[name][0] for name in SETS})
    clips = {}
    for name in SETS:
        rng = random.Random(f"{args.seed}:{name}:clips")
        wavdir = os.path.join(tmp_wav, name)
        os.makedirs(wavdir)
        clips[name] = (plan_speech(rng, VOICES[name], sentences[name], wavdir)
                       + plan_sounds(rng, sizes[name][1], name, wavdir))
    all_clips = [clip for name in SETS for clip in clips[name]]
    print(f"synthesising {len(all_clips)} clips with {args.nj} processes", flush=True)
    synthesise(all_clips, args.nj)

    reports = []
    for name in SETS:
        final_wavdir = os.path.join(args.datadir, "local", "wav", name)
        shutil.rmtree(final_wavdir, ignore_errors=True)
        os.makedirs(os.path.dirname(final_wavdir), exist_ok=True)
        os.rename(os.path.join(tmp_wav, name), final_wavdir)
        setdir = os.path.join(args.datadir, name)
        rows, durations = write_set(setdir, clips[name], final_wavdir,
                                    random.Random(f"{args.seed}:{name}:tasks"))
        _mark_done(setdir, stamp)
        reports.append(_summary(name, clips[name], rows, durations))
    os.rmdir(tmp_wav)
    for name, (source, tasks) in SUBSETS.items():
        subset = os.path.join(args.datadir, name)
        command = [sys.executable, SUBSET_DATA_DIR, "--tasks", tasks, os.path.join(args.datadir, source), subset]
        if subprocess.run(command).returncode != 0:
            raise RuntimeError(f"utils/subset_data_dir.py could not write {subset} (its message is above)")
        _mark_done(subset, stamp)
    print("\n".join(reports))
    print(f"corpus written to {args.datadir} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, RuntimeError) as err:
        sys.exit(f"local/make_corpus.py: error: {err}")
