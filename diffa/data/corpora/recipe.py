"""The data stages of the full recipes (``egs/diffa2/local/data.sh``, ``egs/diffa/local/data.sh``).

A recipe declares its LibriSpeech parts and its authors' indices; this module
supplies the command line and runs the stages:

1. download LibriSpeech (only with ``--download_librispeech true``);
2. LibriSpeech -> ``data/train_asr`` (all ``train-*`` parts merged) and one
   set per other part (``dev-clean`` -> ``data/dev_clean``, ...);
3. the authors' JSON indices -> one set each (``data/train_qa``, ...);
4. benchmarks -> ``data/mmsu``, ``data/mmau_test_mini``, ``data/mmar``.

Every corpus folder defaults to ``<corpora_root>/<name>`` and can be set on
its own; the value ``none`` skips that corpus. A folder that is missing stops
the run with a message naming the option to set and where to download it.

An index file defaults to ``<authors_json_dir>/<set>.json``. An optional index
(see :class:`IndexSet`) whose default file is absent is left out: an index
named ``train_asr`` (the authors' stage-1 ASR data), when present, *replaces*
LibriSpeech's ``train-*`` parts as ``data/train_asr``; an index with a fallback
(e.g. the stage-2 QA index) becomes a link to the fallback's data dir. A file
given on the command line that is missing is always an error.
"""
import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from diffa.data.corpora.authors_json import KINDS, prepare_authors_json
from diffa.data.corpora.datadir import PrepSummary, link_data_dir
from diffa.data.corpora.download import DownloadError
from diffa.data.corpora.librispeech import LIBRISPEECH_MD5, OPENSLR_URL, download_librispeech, prepare_librispeech
from diffa.data.corpora.mmar import MMAR_META, prepare_mmar
from diffa.data.corpora.mmau import MMAU_SPLITS, prepare_mmau
from diffa.data.corpora.mmsu import MMSU_JSONL, prepare_mmsu
from diffa.data.corpora.records import CorpusError

logger = logging.getLogger(__name__)

SKIP = "none"
"""Value of a corpus option that skips the corpus."""

TRAIN_ASR = "train_asr"
"""The stage-1 ASR set: LibriSpeech's ``train-*`` parts, or the authors' index of that name."""


class CorpusNotFound(FileNotFoundError):
    """A corpus folder or file is missing; the message names the option and the download place.

    Example
    -------
    >>> try:  # a FileNotFoundError
    ...     corpus_dir(argparse.Namespace(corpora_root=None, mmsu_dir=None), MMSU)
    ... except FileNotFoundError as err:
    ...     print(type(err).__name__, err)
    CorpusNotFound MMSU: set --mmsu_dir (or --corpora_root); '--mmsu_dir none' skips it. Download: https://...
    """


@dataclass(frozen=True)
class CorpusSource:
    """Where a corpus lives and where to get it, for defaults and error messages.

    Arguments
    ---------
    name : str
        Display name.
    option : str
        Command-line option (without ``--``) holding its folder.
    subdir : str
        Default folder name under ``--corpora_root``.
    expect : tuple of str
        Files of which at least one must exist in the folder (empty: the folder suffices).
    url : str
        Where to download it.

    Example
    -------
    >>> import os, tempfile
    >>> MMAU.option, MMAU.expect
    ('mmau_dir', ('mmau-test-mini.json',))
    >>> demo = CorpusSource("Demo", "demo_dir", "Demo", ("index.json",), "https://example.org/demo")
    >>> with tempfile.TemporaryDirectory() as root:
    ...     os.makedirs(os.path.join(root, "Demo"))
    ...     open(os.path.join(root, "Demo", "index.json"), "w").close()
    ...     corpus_dir(argparse.Namespace(corpora_root=root, demo_dir=None), demo) == Path(root) / "Demo"
    True
    """

    name: str
    option: str
    subdir: str
    expect: Sequence[str]
    url: str


LIBRISPEECH = CorpusSource(
    "LibriSpeech", "librispeech_dir", "LibriSpeech", (),
    f"{OPENSLR_URL}/<part>.tar.gz (https://www.openslr.org/12), or rerun with --download_librispeech true",
)
AUTHORS = CorpusSource(
    "the authors' JSON indices", "authors_json_dir", "authors_json", (),
    "the training data released with https://github.com/NKU-HLT/DIFFA (see egs/*/local/README.md)",
)
MMSU = CorpusSource(
    "MMSU", "mmsu_dir", "MMSU", (str(MMSU_JSONL),),
    "https://huggingface.co/datasets/ddwang2000/MMSU (code: https://github.com/dingdongwang/MMSU)",
)
MMAU = CorpusSource(
    "MMAU", "mmau_dir", "MMAU", (MMAU_SPLITS["test_mini"],),
    "https://github.com/Sakshi113/MMAU (mmau-test-mini.json + the test-mini audio archive it links)",
)
MMAR = CorpusSource(
    "MMAR", "mmar_dir", "MMAR", MMAR_META,
    "https://github.com/ddlBoJack/MMAR (MMAR-meta.json) + https://huggingface.co/datasets/BoJack/MMAR (audio)",
)


@dataclass(frozen=True)
class IndexSet:
    """One authors' JSON index of a recipe and the data dir it becomes.

    Arguments
    ---------
    name : str
        Data dir name (``data/<name>``) and default file stem (``<name>.json``).
    kind : str
        ``"asr"``, ``"qa"`` or ``"pref"`` (see :mod:`diffa.data.corpora.authors_json`).
    help : str
        What the index holds, for ``--help``.
    optional : bool
        Its default file may be absent, leaving no ``data/<name>``; not while
        another index, having no file of its own, falls back on it.
    fallback : str, optional
        Another index set of the recipe: without a file of its own, ``data/<name>``
        is a link to ``data/<fallback>``. Such an index is optional.

    Example
    -------
    >>> qa2 = IndexSet("train_qa_stage2", "qa", "stage-2 QA index", fallback="train_qa")
    >>> qa2.option, qa2.optional, qa2.fallback
    ('train_qa_stage2_json', False, 'train_qa')
    >>> IndexSet("train_tts", "tts", "TTS index")
    Traceback (most recent call last):
    ...
    ValueError: IndexSet 'train_tts': kind must be one of ('asr', 'qa', 'pref'), got 'tts'
    """

    name: str
    kind: str
    help: str
    optional: bool = False
    fallback: Optional[str] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"IndexSet {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def option(self) -> str:
        """Command-line option (without ``--``) that names the index file."""
        return f"{self.name}_json"


def get_parser(description: str, default_parts: Sequence[str],
               index_sets: Sequence[IndexSet]) -> argparse.ArgumentParser:
    """The command line of a recipe's ``local/data.sh``.

    Arguments
    ---------
    description : str
        The recipe's usage text.
    default_parts : sequence of str
        LibriSpeech parts prepared by default.
    index_sets : sequence of IndexSet
        The recipe's authors' indices (each gets a ``--<name>_json`` option).

    Returns
    -------
    argparse.ArgumentParser

    Example
    -------
    >>> p = get_parser("demo", ["dev-clean"], [IndexSet("train_qa", "qa", "instruction data")])
    >>> a = p.parse_args(["--corpora_root", "/c", "--train_qa_json", "none"])
    >>> (a.librispeech_parts, a.train_qa_json, a.stage, a.stop_stage)
    ('dev-clean', 'none', 1, 4)
    """
    parser = argparse.ArgumentParser(
        prog="local/data.sh", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datadir", default="data", help="where the data dirs go (default: %(default)s)")
    parser.add_argument("--corpora_root", help="folder holding LibriSpeech/ authors_json/ MMSU/ MMAU/ MMAR/ "
                                               "(default for every corpus folder below)")
    parser.add_argument("--stage", type=int, default=1, help="first stage: 1 download, 2 LibriSpeech, "
                                                             "3 authors' indices, 4 benchmarks (default: 1)")
    parser.add_argument("--stop_stage", type=int, default=4, help="last stage (default: 4)")
    parser.add_argument("--librispeech_parts", default=" ".join(default_parts),
                        help="parts, separated by spaces or commas; train-* merge into data/train_asr "
                             "(default: %(default)s)")
    parser.add_argument("--download_librispeech", choices=("true", "false"), default="false",
                        help="stage 1: download the parts (MD5-checked, resumable) into the parent of "
                             "--librispeech_dir (default: %(default)s)")
    parser.add_argument("--librispeech_url", default=OPENSLR_URL,
                        help="base URL of <part>.tar.gz (default: %(default)s)")
    for source in (LIBRISPEECH, AUTHORS, MMSU, MMAU, MMAR):
        parser.add_argument(f"--{source.option}",
                            help=f"{source.name} folder (default: <corpora_root>/{source.subdir}; '{SKIP}' skips it)")
    for index in index_sets:
        default = f"<authors_json_dir>/{index.name}.json"
        if index.fallback:
            default += f" if there, else data/{index.name} is a link to data/{index.fallback}"
        elif index.optional:
            default += " if there"
        parser.add_argument(f"--{index.option}", help=f"{index.help} (default: {default}; '{SKIP}' skips it)")
    parser.add_argument("--authors_audio_root", help="where relative audio_filepath values of the indices start "
                                                     "(default: the index's folder)")
    return parser


def corpus_dir(args: argparse.Namespace, source: CorpusSource) -> Optional[Path]:
    """The folder of a corpus from the options, checked; None when skipped.

    Arguments
    ---------
    args : argparse.Namespace
        Parsed options.
    source : CorpusSource
        The corpus.

    Returns
    -------
    Path or None
        The folder, or None if its option is ``none``.

    Raises
    ------
    CorpusNotFound
        No folder given, or the folder (or its expected index) is missing.

    Example
    -------
    >>> import tempfile
    >>> a = argparse.Namespace(corpora_root=tempfile.mkdtemp(), mmar_dir=None)
    >>> corpus_dir(a, MMAR)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    diffa.data.corpora.recipe.CorpusNotFound: MMAR not found at .../MMAR (no such folder); set --mmar_dir ...
    >>> corpus_dir(argparse.Namespace(corpora_root=None, mmar_dir="none"), MMAR) is None
    True
    """
    value = getattr(args, source.option)
    if value == SKIP:
        return None
    if value is None and args.corpora_root is None:
        raise CorpusNotFound(f"{source.name}: set --{source.option} (or --corpora_root); "
                             f"'--{source.option} {SKIP}' skips it. Download: {source.url}")
    folder = Path(value) if value is not None else Path(args.corpora_root) / source.subdir
    if not folder.is_dir():
        problem = "no such folder"
    elif source.expect and not any((folder / f).is_file() for f in source.expect):
        problem = f"no {' or '.join(source.expect)} inside"
    else:
        return folder
    raise CorpusNotFound(
        f"{source.name} not found at {folder} ({problem}); set --{source.option} to its folder "
        f"(or --corpora_root to the folder holding {source.subdir}/), or '--{source.option} {SKIP}' "
        f"to skip it. Download: {source.url}"
    )


def index_file(args: argparse.Namespace, index: IndexSet, required: bool) -> Optional[Path]:
    """The file of one authors' index from the options, checked.

    Arguments
    ---------
    args : argparse.Namespace
        Parsed options.
    index : IndexSet
        The index.
    required : bool
        Whether its default file must exist.

    Returns
    -------
    Path or None
        The file; None when its option is ``none``, or when its default file is
        absent (or there is no authors' folder) and it is not required.

    Raises
    ------
    CorpusNotFound
        A file given on the command line is missing, or a required default is absent.

    Example
    -------
    >>> a = argparse.Namespace(corpora_root="/nowhere", authors_json_dir=None, train_asr_json=None)
    >>> index_file(a, IndexSet("train_asr", "asr", "ASR index", optional=True), required=False) is None
    True
    >>> a.train_asr_json = "/nowhere/asr.json"
    >>> index_file(a, IndexSet("train_asr", "asr", "ASR index", optional=True), required=False)
    Traceback (most recent call last):
    ...
    diffa.data.corpora.recipe.CorpusNotFound: ASR index: /nowhere/asr.json not found; set --train_asr_json ...
    """
    value = getattr(args, index.option)
    if value == SKIP:
        return None
    if value is None:
        try:
            folder = corpus_dir(args, AUTHORS)
        except CorpusNotFound:
            if required:
                raise
            return None
        if folder is None:
            return None
        value = folder / f"{index.name}.json"
        if not (required or value.is_file()):
            return None
    if not Path(value).is_file():
        raise CorpusNotFound(
            f"{index.help}: {value} not found; set --{index.option} to the file (or put it in "
            f"--{AUTHORS.option} as {index.name}.json), or '--{index.option} {SKIP}' to skip it. "
            f"Download: {AUTHORS.url}"
        )
    return Path(value)


def run(args: argparse.Namespace, index_sets: Sequence[IndexSet]) -> List[PrepSummary]:
    """Run stages ``--stage`` .. ``--stop_stage``.

    Arguments
    ---------
    args : argparse.Namespace
        Options from :func:`get_parser`.
    index_sets : sequence of IndexSet
        The recipe's authors' indices.

    Returns
    -------
    list of PrepSummary
        One per data dir written.

    Example
    -------
    >>> import tempfile, os, json, numpy as np, soundfile
    >>> root = tempfile.mkdtemp(); os.makedirs(os.path.join(root, "MMAR", "audio"))
    >>> soundfile.write(os.path.join(root, "MMAR", "audio", "m1.wav"), np.zeros(800, dtype="float32"), 16000)
    >>> item = {"id": "m1", "audio_path": "./audio/m1.wav", "question": "Why?", "choices": ["a", "b"], "answer": "a"}
    >>> _ = open(os.path.join(root, "MMAR", "MMAR-meta.json"), "w").write(json.dumps([item]))
    >>> args = get_parser("demo", [], []).parse_args(["--corpora_root", root, "--stage", "4",
    ...     "--mmsu_dir", "none", "--mmau_dir", "none", "--datadir", os.path.join(root, "data")])
    >>> [s.out_dir.name for s in run(args, [])]
    ['mmar']
    """
    if args.stage > args.stop_stage:
        raise ValueError(f"--stage {args.stage} is after --stop_stage {args.stop_stage}")
    stages: List[Callable[[argparse.Namespace, Sequence[IndexSet]], List[PrepSummary]]] = [
        _stage_download, _stage_librispeech, _stage_authors, _stage_benchmarks,
    ]
    summaries: List[PrepSummary] = []
    for number, stage in enumerate(stages, start=1):
        if args.stage <= number <= args.stop_stage:
            logger.info("Stage %d: %s", number, stage.__doc__)
            summaries.extend(stage(args, index_sets))
    return summaries


def cli(description: str, default_parts: Sequence[str], index_sets: Sequence[IndexSet],
        argv: Optional[Sequence[str]] = None) -> int:
    """Parse options, log to stderr, run the stages; one-line error and status 1 on a data problem.

    Arguments
    ---------
    description, default_parts, index_sets
        The recipe's usage text, default LibriSpeech parts and authors' indices (see :func:`get_parser`).
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 when a corpus is missing or malformed.

    Example
    -------
    >>> cli("demo", [], [], ["--stage", "4", "--mmsu_dir", "/nowhere"])
    1
    """
    parser = get_parser(description, default_parts, index_sets)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        summaries = run(args, index_sets)
    except (CorpusNotFound, CorpusError, DownloadError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    for s in summaries:
        dropped = f", {len(s.dropped)} dropped (missing audio)" if s.dropped else ""
        unmatched = f", {len(s.unmatched)} answer(s) not among the choices (scored by text)" if s.unmatched else ""
        logger.info("%s: %d utts, %.2f h, %d task rows%s%s", s.out_dir, s.n_utts, s.hours, s.n_rows, dropped, unmatched)
    return 0


def _parts(args: argparse.Namespace) -> List[str]:
    parts = args.librispeech_parts.replace(",", " ").split()
    unknown = [p for p in parts if p not in LIBRISPEECH_MD5]
    if unknown:
        raise ValueError(f"--librispeech_parts: unknown part(s) {unknown}; choose from {sorted(LIBRISPEECH_MD5)}")
    return parts


def _stage_download(args: argparse.Namespace, index_sets: Sequence[IndexSet]) -> List[PrepSummary]:
    """download LibriSpeech: <librispeech_url>/<part>.tar.gz -> <librispeech_dir>"""
    if args.download_librispeech != "true":
        logger.info("--download_librispeech false: nothing to download")
        return []
    if args.librispeech_dir not in (None, SKIP):
        target = Path(args.librispeech_dir)
    elif args.librispeech_dir is None and args.corpora_root is not None:
        target = Path(args.corpora_root) / LIBRISPEECH.subdir
    else:
        target = None
    if target is None or target.name != LIBRISPEECH.subdir:
        raise ValueError("--download_librispeech true needs --corpora_root, or a --librispeech_dir whose last "
                         f"component is {LIBRISPEECH.subdir} (the tarballs unpack into {LIBRISPEECH.subdir}/)")
    download_librispeech(_parts(args), target.parent, args.librispeech_url)
    return []


def _stage_librispeech(args: argparse.Namespace, index_sets: Sequence[IndexSet]) -> List[PrepSummary]:
    """LibriSpeech -> data/train_asr (train-* parts) and data/<part> for the others"""
    folder = corpus_dir(args, LIBRISPEECH)
    parts = _parts(args)
    train = [p for p in parts if p.startswith("train-")]
    asr_index = next((i for i in index_sets if i.name == TRAIN_ASR), None)
    asr_file = index_file(args, asr_index, required=False) if asr_index and train else None
    if asr_file is not None:
        logger.info("data/%s comes from %s (stage 3): LibriSpeech %s not read", TRAIN_ASR, asr_file, " ".join(train))
        parts = [p for p in parts if p not in train]
        train = []
    if folder is None or not parts:
        return []
    missing = [p for p in parts if not (folder / p).is_dir()]
    if missing:
        raise CorpusNotFound(f"LibriSpeech part(s) {missing} not found in {folder}; download them "
                             f"({LIBRISPEECH.url}), or drop them from --librispeech_parts")
    datadir = Path(args.datadir)
    summaries = [prepare_librispeech(folder, train, datadir / TRAIN_ASR)] if train else []
    summaries += [prepare_librispeech(folder, [p], datadir / p.replace("-", "_")) for p in parts if p not in train]
    return summaries


def _index_files(args: argparse.Namespace,
                 index_sets: Sequence[IndexSet]) -> Tuple[Dict[str, Optional[Path]], Dict[str, str]]:
    """Each index's file (None: skipped, or optional and absent) and the links to make: set -> its
    fallback, for each set not skipped that has no file. A fallback is required while a set needs it."""
    files = {i.name: index_file(args, i, required=False) for i in index_sets if i.optional or i.fallback}
    links = {i.name: i.fallback for i in index_sets
             if i.fallback and files[i.name] is None and getattr(args, i.option) != SKIP}
    for index in index_sets:
        if index.name in links.values() or not (index.optional or index.fallback):
            files[index.name] = index_file(args, index, required=True)
    return files, {name: target for name, target in links.items() if files[target] is not None}


def _stage_authors(args: argparse.Namespace, index_sets: Sequence[IndexSet]) -> List[PrepSummary]:
    """the authors' JSON indices -> data/<set>"""
    files, links = _index_files(args, index_sets)
    datadir = Path(args.datadir)
    summaries = []
    for index in index_sets:
        if files[index.name] is not None:
            summaries.append(prepare_authors_json(files[index.name], datadir / index.name, index.kind,
                                                  args.authors_audio_root))
        elif index.name in links:
            link_data_dir(datadir / index.name, links[index.name])
            logger.info("%s -> %s: no --%s, so %s serves here too", datadir / index.name, links[index.name],
                        index.option, files[links[index.name]])
    return summaries


def _stage_benchmarks(args: argparse.Namespace, index_sets: Sequence[IndexSet]) -> List[PrepSummary]:
    """benchmarks -> data/mmsu, data/mmau_test_mini, data/mmar"""
    datadir = Path(args.datadir)
    summaries = []
    mmsu = corpus_dir(args, MMSU)
    if mmsu is not None:
        summaries.append(prepare_mmsu(mmsu, datadir / "mmsu"))
    mmau = corpus_dir(args, MMAU)
    if mmau is not None:
        summaries.append(prepare_mmau(mmau, datadir / "mmau_test_mini", "test_mini"))
    mmar = corpus_dir(args, MMAR)
    if mmar is not None:
        summaries.append(prepare_mmar(mmar, datadir / "mmar"))
    return summaries
