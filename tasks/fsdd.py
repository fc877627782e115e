"""Free Spoken Digit Dataset (FSDD): 8 kHz recordings of spoken digits 0-9, classified from MFCC
(or log-mel) frames read by a recurrent net; the last output (both directions) predicts the digit.

Files are named `{digit}_{speaker}_{index}.wav`. The split is the FSDD README's: recordings with
index 0-4 are the test set (300 of v1.0.10's 3,000), 5-49 the training set, from which a fixed,
seeded `valid_size` recordings are held out for validation (the same for every run). Features are
standardized per coefficient with the mean and std of the training frames.

Sources: a folder of wavs in `<data_dir>/fsdd/recordings`, `<data_dir>/recordings`, `<data_dir>/fsdd` or
`<data_dir>` (with `manifest.tsv` beside `recordings/` when present: columns file, digit, speaker,
index), else TFDS `spoken_digit` (v1.0.9, 2,500 recordings, one `train` split; the index rule is
applied to its file names). Reading and featurizing all 3,000 files takes about 4-6 s on a 2-core
CPU (plus librosa's one-time numba compilation on first use), small beside training, so features
are computed on each load rather than cached.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tasks.checksums import verify
from tasks.base import NO_DATA_DIR, DataError, Split, Task, classification_metrics, majority_class

FILENAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")  # {digit}_{speaker}_{index}.wav
TEST_INDICES = 5  # recordings 0-4 of each speaker and digit are the test set (FSDD README)
SPLIT_VALID_SEED = 0  # the validation recordings are the same whatever the run's seed


class Recordings(NamedTuple):
    audio: list  # float32 waveforms at the task's sample rate
    digits: np.ndarray  # [N] int32
    speakers: np.ndarray  # [N] str
    indices: np.ndarray  # [N] int32, the recording number in the file name
    sources: tuple = ()  # [N] where each came from (a path, or TFDS's file name), for errors


class FeatureSpec(NamedTuple):
    """How audio becomes frames: `kind` mfcc (n_mfcc coefficients of n_mels log-mel bands) or logmel."""

    kind: str  # values: conf/task/fsdd.yaml
    n_mfcc: int
    n_mels: int
    window_ms: float
    hop_ms: float
    sample_rate: int

    def check(self) -> None:
        if self.kind not in ("mfcc", "logmel"):
            raise ValueError(f"task.features={self.kind!r}; choose mfcc or logmel.")
        if not 0 < self.hop_ms <= self.window_ms:
            raise ValueError(f"task.hop_ms must be in (0, window_ms={self.window_ms}], got {self.hop_ms}.")
        if self.kind == "mfcc" and not 0 < self.n_mfcc <= self.n_mels:
            raise ValueError(f"task.n_mfcc must be between 1 and n_mels={self.n_mels}, got {self.n_mfcc}.")

    @property
    def window(self) -> int:
        """Samples per analysis frame."""
        return round(self.sample_rate * self.window_ms / 1000)

    def check_length(self, audio: np.ndarray, source) -> None:
        """A recording shorter than one analysis window has no frame of its own (librosa would pad it out)."""
        if len(audio) < self.window:
            raise DataError(f"{source}: {len(audio)} samples ({1000 * len(audio) / self.sample_rate:.1f} ms at "
                            f"{self.sample_rate} Hz) is shorter than one analysis window (task.window_ms={self.window_ms:g}: "
                            f"{self.window} samples); remove the recording or lower task.window_ms.")

    @property
    def size(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """[samples] -> [frames, size] float32."""
        import librosa

        window = round(self.sample_rate * self.window_ms / 1000)
        hop = round(self.sample_rate * self.hop_ms / 1000)
        mel = librosa.feature.melspectrogram(y=audio, sr=self.sample_rate, n_fft=window, hop_length=hop, n_mels=self.n_mels)
        logmel = librosa.power_to_db(mel)  # [n_mels, frames]
        out = logmel if self.kind == "logmel" else librosa.feature.mfcc(S=logmel, n_mfcc=self.n_mfcc)
        return np.ascontiguousarray(out.T, np.float32)


def parse_name(path: Path) -> tuple[int, str, int]:
    match = FILENAME.match(path.name)
    if not match:
        raise DataError(f"{path}: not an FSDD file name; expected {{digit}}_{{speaker}}_{{index}}.wav, e.g. 7_jackson_32.wav.")
    return int(match[1]), match[2], int(match[3])


def find_recordings(data_dir: str | None) -> Path | None:
    if not data_dir:
        return None
    root = Path(data_dir)
    for folder in (root / "fsdd" / "recordings", root / "recordings", root / "fsdd", root):
        if folder.is_dir() and any(folder.glob("*.wav")):
            return folder
    return None


def list_files(folder: Path) -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, index) for every recording: from manifest.tsv beside the folder when
    present (so a missing file is reported), else from the wav names."""
    manifest = folder.parent / "manifest.tsv"
    if not manifest.is_file():
        return [(p, *parse_name(p)) for p in sorted(folder.glob("*.wav"))]
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"file", "digit", "speaker", "index"} <= set(rows[0]):
        raise DataError(f"{manifest}: expected a tab-separated table with columns file, digit, speaker, index.")
    out = []
    for row in rows:
        path = manifest.parent / row["file"]
        if not path.is_file():
            raise DataError(f"{path}: listed in {manifest} but missing.")
        try:
            digit, index = int(row["digit"]), int(row["index"])
        except ValueError:
            raise DataError(f"{manifest}: the row of {row['file']} has digit {row['digit']!r} and index {row['index']!r}; "
                            "both must be whole numbers.") from None
        if not 0 <= digit <= 9:
            raise DataError(f"{manifest}: {row['file']} is labelled digit {digit}; FSDD's classes are the digits 0-9.")
        out.append((path, digit, row["speaker"], index))
    return out


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    """A mono float32 waveform at `sample_rate`; a clear error for unreadable or empty files."""
    import soundfile

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or OSError
        raise DataError(f"{path}: cannot read it as audio ({type(e).__name__}: {e}); it is truncated or not a wav file.") from e
    if len(audio) == 0:
        raise DataError(f"{path}: holds no audio samples.")
    return resample(audio.mean(1), rate, sample_rate)


def resample(audio: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    if rate == sample_rate:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=rate, target_sr=sample_rate).astype(np.float32)


def load_folder(folder: Path, sample_rate: int) -> Recordings:
    files = list_files(folder)
    if not files:
        raise DataError(f"{folder}: no recordings ({{digit}}_{{speaker}}_{{index}}.wav) found.")
    verify(*(path for path, *_ in files))  # against SHA256SUMS, if one lists them
    _, digits, speakers, indices = zip(*files)
    audio = [read_wav(path, sample_rate) for path, *_ in files]
    return Recordings(audio, np.array(digits, np.int32), np.array(speakers), np.array(indices, np.int32),
                      tuple(path for path, *_ in files))


def load_tfds(data_dir: str | None, sample_rate: int, download: bool = True) -> Recordings:
    """The download path: TFDS `spoken_digit` (one split), read without TensorFlow via `tfds.data_source`."""
    if not download and not data_dir:
        raise DataError(
            f"FSDD not found: {NO_DATA_DIR}. Set ODYSSEY_DATA_DIR (or pass data_dir=) to a folder holding "
            "fsdd/recordings/{digit}_{speaker}_{index}.wav, or pass download=true to fetch them through TFDS (needs internet).")
    if not download:
        raise DataError(
            f"FSDD not found: no {{digit}}_{{speaker}}_{{index}}.wav files in data_dir={data_dir!r} (or its fsdd/recordings, "
            "recordings, fsdd). Put the recordings in <data_dir>/fsdd/recordings and pass data_dir=<data_dir> (or set "
            "ODYSSEY_DATA_DIR once), or pass download=true to fetch them through TFDS (needs internet).")
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source("spoken_digit", data_dir=data_dir)["train"]
    except Exception as e:  # offline with nothing prepared: say where we looked and what to do
        raise DataError(
            f"FSDD not found: no {{digit}}_{{speaker}}_{{index}}.wav files in data_dir={data_dir!r} (or its fsdd/recordings, "
            f"recordings, fsdd), and TFDS could not prepare 'spoken_digit' ({type(e).__name__}: {e}). Put the recordings in "
            "<data_dir>/fsdd/recordings and pass data_dir=<data_dir> (or set ODYSSEY_DATA_DIR), or run once with internet access."
        ) from e
    items = source.__getitems__(range(len(source)))
    names = [Path(it["audio/filename"].decode() if isinstance(it["audio/filename"], bytes) else it["audio/filename"]) for it in items]
    digits, speakers, indices = zip(*(parse_name(n) for n in names))
    audio = [resample(np.asarray(it["audio"], np.float32).reshape(-1) / 32768.0, 8000, sample_rate) for it in items]  # int16 PCM
    return Recordings(audio, np.array(digits, np.int32), np.array(speakers), np.array(indices, np.int32),
                      tuple(f"TFDS spoken_digit {name}" for name in names))


def load_recordings(data_dir: str | None, sample_rate: int, download: bool) -> Recordings:
    folder = find_recordings(data_dir)
    return load_folder(folder, sample_rate) if folder else load_tfds(data_dir, sample_rate, download)


def split_ids(indices: np.ndarray, valid_size: int) -> dict[str, np.ndarray]:
    """Test: recording index 0-4; train: 5-49 less `valid_size` recordings held out by a fixed seed."""
    test, train = np.flatnonzero(indices < TEST_INDICES), np.flatnonzero(indices >= TEST_INDICES)
    if not 0 < valid_size < len(train):
        raise ValueError(f"valid size must be between 1 and {len(train) - 1} (there are {len(train)} training recordings), got {valid_size}.")
    order = np.random.default_rng(SPLIT_VALID_SEED).permutation(len(train))
    return {"train": np.sort(train[order[valid_size:]]), "valid": np.sort(train[order[:valid_size]]), "test": test}


def utterances(data_dir: str | None, spec: FeatureSpec, valid_size: int,
               download: bool) -> dict[str, tuple[list, np.ndarray, np.ndarray]]:
    """Per split: (standardized feature sequences [T_i, F], digits, speakers)."""
    rec = load_recordings(data_dir, spec.sample_rate, download)
    for audio, source in zip(rec.audio, rec.sources or [f"recording {i}" for i in range(len(rec.audio))]):
        spec.check_length(audio, source)
    feats = [spec(a) for a in rec.audio]
    ids = split_ids(rec.indices, valid_size)
    frames = np.concatenate([feats[i] for i in ids["train"]])  # statistics of the training frames only
    mean, std = frames.mean(0), frames.std(0) + 1e-6
    return {s: ([(feats[i] - mean) / std for i in idx], rec.digits[idx], rec.speakers[idx]) for s, idx in ids.items()}


def pad(seqs: list) -> Split:
    """Sequences [T_i, F] -> x [N, max T_i, F] zero-padded, and lengths [N]."""
    lengths = np.array([len(s) for s in seqs], np.int32)
    x = np.zeros((len(seqs), lengths.max(), seqs[0].shape[1]), np.float32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    return {"x": x, "lengths": lengths}


class FSDDTask(Task):
    output_size = 10
    readout = "last"
    objective = ("accuracy", "max")

    def __init__(self, name: str, features: str, n_mfcc: int, n_mels: int, window_ms: float, hop_ms: float,
                 sample_rate: int, valid_size: int, time_bucket: int):
        self.spec = FeatureSpec(features, n_mfcc, n_mels, window_ms, hop_ms, sample_rate)
        self.spec.check()
        self.name, self.valid_size, self.time_bucket = name, valid_size, time_bucket
        self.preparing = f"reading the recordings and computing their {features} features"  # ~15-30 s on 2 cores

    @property
    def input_size(self) -> int:
        return self.spec.size

    def chance(self, splits):
        return majority_class(splits)

    def load(self, data_dir: str | None, seed: int) -> dict[str, Split]:
        splits = utterances(data_dir, self.spec, self.valid_size, self.download)
        return {s: {**pad(feats), "y": digits} for s, (feats, digits, _) in splits.items()}

    def metrics(self, outputs, batch):
        return classification_metrics(outputs, batch["y"], batch["mask"])
