"""What `auto` picks for each speed path (`speed.unroll`, `hoist_projection`, `fused_gradient`, `kernel`),
per backend and shape, and the measurements each rule rests on.

Every path computes the same outputs and gradients (tests/test_speed_settings.py), so a rule only trades
time; each is the faster choice where it was measured, and the default where nothing was. A rule changes
when a measurement says so: add the figure and its command here, beside the rule.

Measured on CPU (the 2-core AMD EPYC VM, JAX 0.10.2, training throughput at batch 128 with the batch
split over both cores; `python -m benchmarks.throughput --cells np gru srn --shapes row pixel row512
--unroll 1 2 4 8 --rounds 3 --no-flax --no-torch`, 2026-12-02 01:32, idle), sequences/s at unroll 1 / 2 / 4 / 8:

    row MNIST, T=28, H=128     np 4,411 / 3,440 / 2,430 / 1,449   gru 6,223 / 5,482 / 4,074 / 2,413   srn 14,217 / 14,222 / 13,232 / 12,133
    pixel MNIST, T=784, H=128  np   136 /   116 /    85 /    43   gru   191 /   165 /   128 /    76   srn    451 /    525 /    525 /    511
    row MNIST, T=28, H=512     np   395 /   378 /   274 /   189   gru   476 /   481 /   421 /   278   srn  1,516 /  1,451 /  1,324 /  1,310

XLA:CPU runs an unrolled gated step slower (np at unroll 8: a third of the speed); only the SRN's long
sequences gain, 1.16x at unroll 2 (confirmed: `--cells srn np --shapes pixel --unroll 1 2 --rounds 5`,
2026-12-02 01:44: srn 398 -> 513 seq/s, 1.29x; np 121 -> 112, 0.93x).

Not measured on GPU or TPU yet: there the rules keep what ran before `auto` existed (unroll 1, the
projection hoisted, autodiff's gradient, the scan), and `bash benchmarks/gpu_check.sh scan kernel` prints
the figures that will set them (unroll 1 / 8 / 32 with and without the fused gradient, and the Pallas
kernel, each on 28- and 784-step sequences against cuDNN).
"""

from __future__ import annotations

import jax

SETTINGS = ("auto", True, False)
PATHS = ("unroll", "hoist_projection", "fused_gradient", "kernel", "parallel_scan")  # the speed settings that pick a scan path


def backend_of(platform: str | None = None) -> str:
    """The backend a run computes on: its forced `platform`, else JAX's default."""
    return platform or jax.default_backend()


def unroll(setting, backend: str, cell: str, hidden: int) -> int:
    """speed.unroll: time steps per scan iteration. CPU: 2 for the SRN up to 128 units (pixel MNIST 1.16x,
    row MNIST 1.00x; at 512 units 0.96x), otherwise 1 (every gated cell and the GRU lose with more; module
    doc). GPU/TPU: 1, not yet measured."""
    if setting != "auto":
        return int(setting)
    if backend == "cpu" and cell == "srn" and hidden <= 128:
        return 2
    return 1


def hoist_projection(setting, backend: str) -> bool:
    """speed.hoist_projection: W x + b for all steps in one matmul before the scan (true) or in each step.
    CPU: in the step (the hoisted gradient of np at row MNIST, B=128, one device: 40.7 against 35.5 ms with
    freed memory kept; README, Measured). GPU/TPU: hoisted, as the H200 table ran (not timed against the
    in-step placement there)."""
    return _switch(setting, auto=backend != "cpu")


def fused_gradient(setting, backend: str) -> bool:
    """speed.fused_gradient (paths/fused.py: dR in one matmul after the loop). CPU: off, 0.90-0.96x of
    autodiff's scan on row MNIST at H=128 and H=512 (README, Measured). GPU/TPU: off, not yet measured
    (`gpu_check.sh scan`)."""
    return _switch(setting, auto=False)


def kernel(setting, backend: str) -> bool:
    """speed.kernel (paths/kernel.py: the time loop in one Pallas kernel). CPU: off, Pallas' interpreter
    is for tests and far slower than the scan. GPU: off until `gpu_check.sh kernel` has timed it against
    the scan and cuDNN. TPU: off (the kernel's compiler parameters are Triton's)."""
    return _switch(setting, auto=False)


def parallel_scan(setting, backend: str, cell: str) -> bool:
    """speed.parallel_scan (paths/parallel.py: jax.lax.associative_scan, for cells whose state is linear given
    the inputs: minGRU, minLSTM). CPU: off, the sequential scan is faster: 0.56-0.61x with it (2026-12-06, the
    2-core VM, loaded (load 8.6), `python -m benchmarks.throughput --cells mingru minlstm --shapes row pixel
    --parallel-scan false true --rounds 3 --no-flax --no-torch`, seq/s sequential / parallel: row mingru
    25,806 / 15,828, minlstm 12,435 / 7,030; pixel mingru 171 / 97, minlstm 104 / 63): two cores have no
    parallelism for its log T levels to use, and it does about twice the work. The recurrence alone says the
    same (`python -m benchmarks.cpu_step --only loop recurrence --length 784`, 2026-12-06 10:54, B=64, H=128,
    load 4.1): associative_scan takes 3.4x lax.scan's time forward (66 against 20 ms) and 2.7x in the
    gradient, while the loop's own cost is 8 us a step forward: nothing for a parallel form to save on CPU. GPU/TPU: off until `bash benchmarks/gpu_check.sh parallel` has timed it."""
    return _switch(setting, auto=False)


def _switch(setting, auto: bool) -> bool:
    return auto if setting == "auto" else bool(setting)


def check(speed) -> list[str]:
    """What is wrong with a config's speed paths, as messages that say what is accepted."""
    problems = []
    whole = isinstance(speed.unroll, int) and not isinstance(speed.unroll, bool)
    if speed.unroll != "auto" and not (whole and speed.unroll >= 1):
        problems.append(f"speed.unroll must be a whole number >= 1 (time steps per scan iteration) or auto, got {speed.unroll!r}")
    for key in ("hoist_projection", "fused_gradient", "kernel", "parallel_scan"):
        if speed[key] not in SETTINGS:
            problems.append(f"speed.{key}={speed[key]!r}; choose true, false or auto")
    return problems


def chosen(speed, backend: str, cell: str, hidden: int) -> dict:
    """The paths a config's speed settings give a model of `cell` and `hidden` units on `backend`."""
    return {"unroll": unroll(speed.unroll, backend, cell, hidden),
            "hoist_projection": hoist_projection(speed.hoist_projection, backend),
            "fused_gradient": fused_gradient(speed.fused_gradient, backend),
            "kernel": kernel(speed.kernel, backend),
            "parallel_scan": parallel_scan(speed.parallel_scan, backend, cell)}
