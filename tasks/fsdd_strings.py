"""Spoken digit strings: 2-5 FSDD recordings of one speaker read as one utterance, transcribed with
CTC (Graves et al. 2006) and scored by digit error rate.

Each string is drawn from a single split's recordings (so test strings hold only test recordings,
index 0-4; the split rules are tasks/fsdd.py's): a speaker, a length k in [min_digits, max_digits],
then k of that speaker's recordings. Its input is the concatenation of the recordings' standardized
feature frames (the same as featurizing the joined audio except for the one or two frames at each
joint, and far cheaper); its label is the digit string. Generation depends only on `data_seed` and
the split, so every run of a sweep sees the same strings, and changing train_size leaves the test
set as it was.

The head emits 11 classes per frame: the digits 0-9 and the CTC blank (10). The loss is optax's CTC
loss per string; "error_rate" decodes greedily (argmax per frame, collapse repeats, drop blanks) and
divides the edit distance to the reference by the reference length, summed over the split.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
from rapidfuzz.distance import Levenshtein

from tasks.base import Split, Task
from tasks.fsdd import FeatureSpec, pad, utterances

BLANK = 10  # CTC blank id; the digits are their own ids
SPLIT_STREAMS = {"train": 0, "valid": 1, "test": 2}  # one random stream per split


def make_strings(feats: list, digits: np.ndarray, speakers: np.ndarray, n: int, min_digits: int,
                 max_digits: int, rng: np.random.Generator) -> Split:
    """n strings: x [n, T, F], lengths [n], y [n, max_digits] (digits, 0-padded), label_lengths [n]."""
    by_speaker = [np.flatnonzero(speakers == s) for s in np.unique(speakers)]
    seqs, labels, label_lengths = [], np.zeros((n, max_digits), np.int32), np.zeros(n, np.int32)
    for i in range(n):
        pool = by_speaker[rng.integers(len(by_speaker))]
        k = int(rng.integers(min_digits, max_digits + 1))
        pick = rng.choice(pool, size=k, replace=len(pool) < k)
        seqs.append(np.concatenate([feats[j] for j in pick]))
        labels[i, :k], label_lengths[i] = digits[pick], k
    return {**pad(seqs), "y": labels, "label_lengths": label_lengths}


def greedy_decode(logits: np.ndarray, length: int) -> list[int]:
    """Best path: argmax per frame over the first `length` frames, repeats collapsed, blanks dropped."""
    best = logits[:length].argmax(-1)
    keep = best != np.concatenate([[-1], best[:-1]])
    return [int(c) for c in best[keep] if c != BLANK]


class FSDDStringsTask(Task):
    output_size = 11  # digits 0-9 and the CTC blank
    readout = "all"
    objective = ("error_rate", "min")
    needs_host_metrics = True

    def __init__(self, name: str, features: str, n_mfcc: int, n_mels: int, window_ms: float, hop_ms: float,
                 sample_rate: int, valid_recordings: int, min_digits: int, max_digits: int, train_size: int,
                 valid_size: int, test_size: int, data_seed: int, time_bucket: int):
        self.spec = FeatureSpec(features, n_mfcc, n_mels, window_ms, hop_ms, sample_rate)
        self.spec.check()
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"task.min_digits and task.max_digits must satisfy 1 <= min <= max, got {min_digits} and {max_digits}.")
        for key, n in (("train_size", train_size), ("valid_size", valid_size), ("test_size", test_size)):
            if n < 1:
                raise ValueError(f"task.{key} must be a positive number of strings, got {n}.")
        self.name, self.valid_recordings, self.data_seed, self.time_bucket = name, valid_recordings, data_seed, time_bucket
        self.min_digits, self.max_digits = min_digits, max_digits
        self.sizes = {"train": train_size, "valid": valid_size, "test": test_size}
        self.preparing = f"reading the recordings and computing their {features} features"  # ~15-30 s on 2 cores

    @property
    def input_size(self) -> int:
        return self.spec.size

    def load(self, data_dir: str | None, seed: int) -> dict[str, Split]:
        splits = utterances(data_dir, self.spec, self.valid_recordings, self.download)
        return {s: make_strings(*splits[s], n, self.min_digits, self.max_digits,
                                np.random.default_rng([self.data_seed, SPLIT_STREAMS[s]]))
                for s, n in self.sizes.items()}

    def metrics(self, outputs, batch):
        """CTC loss per string (jittable); padded frames and labels are marked as paddings."""
        T, L = outputs.shape[1], batch["y"].shape[1]
        frame_pad = (jnp.arange(T)[None, :] >= batch["lengths"][:, None]).astype(jnp.float32)  # [B, T]
        label_pad = (jnp.arange(L)[None, :] >= batch["label_lengths"][:, None]).astype(jnp.float32)  # [B, L]
        ctc = optax.ctc_loss(outputs.astype(jnp.float32), frame_pad, batch["y"], label_pad, blank_id=BLANK)  # [B]
        n = batch["mask"].sum()
        total = (ctc * batch["mask"]).sum()
        return {"loss": (total, n), "ctc": (total, n)}

    def host_metrics(self, outputs, batch):
        errors = reference = 0
        for b in np.flatnonzero(batch["mask"]):
            truth = batch["y"][b, :batch["label_lengths"][b]].tolist()
            errors += Levenshtein.distance(greedy_decode(outputs[b], int(batch["lengths"][b])), truth)
            reference += len(truth)
        return {"error_rate": (float(errors), float(reference))}
