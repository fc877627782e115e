"""What a run says about itself before it trains: one line naming what trains (the cell with its switches,
the task), its parameter count, the devices and the run folder, so a log (a Slurm file, a sweep's console)
says what it is a log of before the first epoch ends; then a line before the data loads, since that may take
tens of seconds (FSDD's features) with nothing else to show."""

from __future__ import annotations

import jax
import numpy as np

from training.model import count_params


def cell_words(cfg) -> str:
    """The cell by name with the switches changed on top of it (np+coupled=True), and its shape:
    "nig, 128 units", "gru, 2 layers of 64 units, bidirectional"."""
    from variants.gated import VARIANTS

    name = cfg.cell.name
    if name in VARIANTS:  # Greff's variants: the switches changed on top of the named one (cell.switches)
        switches = {k: v for k, v in cfg.cell.switches.items() if v is not None}  # conf/cell_defaults/gated.yaml
        name = "+".join([name, *(f"{k}={v}" for k, v in switches.items() if getattr(VARIANTS[name], k) != v)])
    shape = f"{cfg.layers} layers of {cfg.hidden} units" if cfg.layers > 1 else f"{cfg.hidden} units"
    return f"{name}, {shape}" + (", bidirectional" if cfg.bidirectional else "")


def device_words(devices) -> str:
    """'2 cpu devices', '1 gpu device (NVIDIA H100 80GB HBM3)'."""
    first = devices[0]
    kind = f" ({first.device_kind})" if first.platform != "cpu" else ""
    return f"{len(devices)} {first.platform} device{'s' if len(devices) != 1 else ''}{kind}"


def parameter_count(model, task, key) -> int:
    """The model's parameters, from shapes alone (jax.eval_shape): known before any data has loaded."""
    x = jax.ShapeDtypeStruct((1, 1, task.input_size), np.float32)
    lengths = jax.ShapeDtypeStruct((1,), np.int32)
    return count_params(jax.eval_shape(model.init, key, x, lengths))


def first_line(cfg, task_name: str, num_params: int, devices, folder) -> str:
    """training nig, 128 units, on mnist: 34,186 parameters, 2 cpu devices; run folder /path/to/run"""
    return (f"training {cell_words(cfg)}, on {task_name}: {num_params:,} parameters, {device_words(devices)}; "
            f"run folder {folder}")


def preparing_line(task, data_dir) -> str | None:
    """The line before the data loads ('mnist: reading the images (data_dir=/data) ...'); None when it is instant."""
    if task.preparing is None:
        return None
    where = f" (data_dir={data_dir})" if data_dir else ""
    return f"{task.name}: {task.preparing}{where} ..."


def data_line(task_name: str, splits: dict, seconds: float) -> str:
    """The line after the data loaded: the splits' sizes and how long their sequences are, which says what
    a sequence per second is on this task ('mnist: 54,000 train, 6,000 valid, 10,000 test sequences of 28
    steps; ready in 12s')."""
    lengths = splits["train"]["lengths"]
    steps = (f"{int(lengths[0])} steps" if lengths.min() == lengths.max() else
             f"{int(lengths.min())}-{int(lengths.max())} steps (mean {lengths.mean():.0f})")
    sizes = ", ".join(f"{len(splits[s]['lengths']):,} {s}" for s in ("train", "valid", "test"))
    return f"{task_name}: {sizes} sequences of {steps}; ready in {seconds:.0f}s"


def chance_words(result: dict) -> str:
    """' (chance 0.1135: always class 1, the training set's most frequent)' for the closing line, when the
    record holds the task's chance level for its objective."""
    chance = result.get("chance") or {}
    if not chance or chance.get("metric") != (result.get("objective") or {}).get("name"):
        return ""
    return f" (chance {chance['test']:.4f}: {chance['how']})"
