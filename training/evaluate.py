"""Evaluate a finished (or interrupted) run's checkpoint on a split, and say how it compares with its record:

    python -m training.evaluate RUN_DIR                    # the best validation epoch's checkpoint, on test
    python -m training.evaluate RUN_DIR split=valid checkpoint=latest data_dir=../shared/data

The model, task and data come from the run's result.json (`config`), so what is evaluated is what trained;
the numbers equal the record's (the best checkpoint is the state result.json's test figure came from).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
from omegaconf import OmegaConf

SPLITS, WHICH = ("train", "valid", "test"), ("best", "latest")


def evaluate_run(run_dir: Path, split: str = "test", checkpoint: str = "best", data_dir: str | None = None) -> tuple[dict, int]:
    """(the split's metrics, the checkpoint's epoch)."""
    from tasks import make_task
    from training.build import first_example, initial_state, model_and_optimizer
    from training.checkpoint import Checkpoints
    from training.loop import evaluate
    from training.split import make_steps

    if split not in SPLITS or checkpoint not in WHICH:
        raise ValueError(f"split={split!r}, checkpoint={checkpoint!r}; choose split from {', '.join(SPLITS)} and "
                         f"checkpoint from {', '.join(WHICH)}.")
    run_dir = Path(run_dir)
    record_path = run_dir / "result.json"
    try:
        record = json.loads(record_path.read_text())
        cfg = OmegaConf.create(record["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{record_path}: no run record with its config ({type(e).__name__}: {e}); a run folder holds one.") from e
    folder = run_dir / "checkpoints" / ("best" if checkpoint == "best" else "")
    if not folder.is_dir() or not any(p.name.isdigit() for p in folder.iterdir()):
        raise ValueError(f"{folder} holds no checkpoint (looked for the {checkpoint} one: numbered folders there); "
                         "a run that never finished an epoch has none.")
    if data_dir is not None:
        cfg.data_dir = data_dir
    task = make_task(cfg.task, download=False)
    splits = task.load(cfg.data_dir, cfg.seed)
    model, tx = model_and_optimizer(cfg, task)  # as training.loop.fit builds them
    template = initial_state(model, tx, jax.random.key(0), *first_example(splits["train"]))  # the tree a checkpoint holds
    ckpt = Checkpoints(run_dir / "checkpoints")
    try:
        epoch = ckpt.best_epoch() if checkpoint == "best" else ckpt.latest_epoch()
        state, _ = ckpt.restore(epoch, template, best=checkpoint == "best")
    finally:
        ckpt.close()
    steps = make_steps(model, task, tx, [jax.devices()[0]])
    return evaluate(steps, task, state["params"], splits[split], cfg.eval_batch_size), epoch


def main(argv: list[str]) -> None:
    from training.devices import pin_matmul_kernels
    from training.logs import configure_logging

    configure_logging()
    pin_matmul_kernels()  # as the run did: its records' numbers come from these kernels
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__)
    options = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    unknown = sorted(set(options) - {"split", "checkpoint", "data_dir"}) + [a for a in argv[1:] if "=" not in a]
    if unknown:
        sys.exit(f"error: unknown option {unknown[0]!r}; accepted: split=train|valid|test, checkpoint=best|latest, data_dir=DIR")
    try:
        metrics, epoch = evaluate_run(Path(argv[0]), **options)
    except Exception as e:  # one line a user can act on
        sys.exit(f"error: {e}")
    split, which = options.get("split", "test"), options.get("checkpoint", "best")
    record = json.loads((Path(argv[0]) / "result.json").read_text())
    recorded = record.get(split) if which == "best" else (record.get("final") or {}).get(split)  # what the run logged
    figures = " ".join(f"{k}={v:.6g}" for k, v in metrics.items())
    line = f"{split} at epoch {epoch} ({which} checkpoint): {figures}"
    if recorded:
        line += "; the record: " + " ".join(f"{k}={v:.6g}" for k, v in recorded.items() if isinstance(v, (int, float)))
    print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
