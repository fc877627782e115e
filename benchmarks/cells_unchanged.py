"""Do the cells still compute what they computed at another commit? Outputs and gradients, every path.

A refactor of the cells must not change a number beyond float32 rounding. This script runs every cell a
revision has, on fixed parameters and inputs (drawn per parameter name, so both trees get the same values),
through every scan path of both revisions' common API (`variants.RNN`: plain, hoisted, unrolled, reversed,
`fused_gradient`, `kernel`, with padded sequences) and every Greff variant as `variants.SwitchedCell`, and
draws each cell's initial parameters from one key, once in a copy of the other revision (`git archive`) and
once here, then prints the largest difference of each case. A case the other revision has and this one does
not is a failure; cells new here are listed.

    python -m benchmarks.cells_unchanged --base 26d1cf9          # about 4 minutes on the 2-core CPU

Exit status 1 when a difference exceeds --tol (relative to the value's scale, default 1e-5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
B, T, D, H = 5, 6, 3, 8
LENGTHS = [6, 2, 5, 1, 6]
PATHS = {  # name -> variants.RNN keyword arguments
    "plain": {}, "hoisted": {"hoist_projection": True}, "unroll3": {"unroll": 3}, "reverse": {"reverse": True},
    "fused": {"fused_gradient": True}, "kernel": {"kernel": True},
}
GREFF = ("v", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")


def draw(shapes):
    """Fixed values per parameter path (its name seeds the draw), so both revisions get the same numbers."""
    import jax
    import numpy as np

    def one(path, s):
        seed = zlib.crc32(jax.tree_util.keystr(path).encode())
        return np.random.default_rng(seed).normal(0.0, 0.5, s.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(one, shapes)


def measure(out: Path) -> None:
    """Every case's outputs, final carry and gradients, into `out` (.npz), with this checkout's code."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import variants
    from variants import RNN, make_cell

    jax.config.update("jax_default_matmul_precision", "float32")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    lengths = jnp.asarray(LENGTHS, jnp.int32)
    results = {}

    def run(rnn, variables, tag):
        def loss(variables, x):
            carry, ys = rnn.apply(variables, x, lengths)
            value = jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carry))
            return value, (ys, carry)

        (_, (ys, carry)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(variables, x)
        results[f"{tag}/ys"] = np.asarray(ys)
        leaves = [np.asarray(c) for c in jax.tree.leaves(carry)]
        results[f"{tag}/carry"] = np.concatenate(leaves, axis=-1)
        for path, g in jax.tree_util.tree_flatten_with_path(grads[0])[0]:
            results[f"{tag}/grad{jax.tree_util.keystr(path)}"] = np.asarray(g)
        results[f"{tag}/grad_x"] = np.asarray(grads[1])

    for name in variants.CELLS:
        for path, kwargs in PATHS.items():
            rnn = RNN(make_cell(name, H), **kwargs)
            shapes = jax.eval_shape(lambda: rnn.init(jax.random.key(0), x, lengths))
            run(rnn, draw(shapes), f"{name}/{path}")
        initial = RNN(make_cell(name, H)).init(jax.random.key(0), x, lengths)  # the initialisers' draws, in order
        for path, value in jax.tree_util.tree_flatten_with_path(initial)[0]:
            results[f"{name}/init/{jax.tree_util.keystr(path)}"] = np.asarray(value)
    from training import switches

    for name in GREFF:  # every variant with its switches as data, laid into V's (or FGR's) parameters
        spec = variants.VARIANTS[name]
        lone, switched = RNN(make_cell(name, H)), RNN(make_cell(name, H, switches_as_data=True))
        own = {"params": draw(jax.eval_shape(lambda: lone.init(jax.random.key(0), x, lengths)))["params"]}
        superset = {"params": jax.eval_shape(lambda: switched.init(jax.random.key(0), x, lengths))}
        run(switched, switches.embed(own, superset, spec)["params"], f"{name}/switched")
    np.savez(out, **results)


def compare(before: Path, after: Path, tol: float) -> bool:
    import numpy as np

    a, b = np.load(before), np.load(after)
    gone, new = sorted(set(a.files) - set(b.files)), sorted({"/".join(k.split("/")[:2]) for k in set(b.files) - set(a.files)})
    worst, ok = {}, not gone
    for key in sorted(set(a.files) & set(b.files)):
        u, v = a[key], b[key]
        if u.shape != v.shape:
            print(f"{key}: shape {u.shape} -> {v.shape}")
            ok = False
            continue
        err = float(np.max(np.abs(u - v) / (np.abs(u) + 1.0))) if u.size else 0.0
        case = "/".join(key.split("/")[:2])
        worst[case] = max(worst.get(case, 0.0), err)
    for case, err in worst.items():
        flag = "" if err <= tol else "   <-- over tolerance"
        ok &= err <= tol
        print(f"{case:22s} largest |after - before| / (|before| + 1): {err:.2e}{flag}")
    if gone:
        print("MISSING here:", ", ".join(gone))
    if new:
        print("new here (not compared):", ", ".join(new))
    print(f"{len(worst)} cases, {len(a.files)} arrays: " + ("all within" if ok else "NOT all within") + f" {tol:g}")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="26d1cf9", help="the revision to compare with")
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--before", type=Path, help="the base's numbers measured before (--measure), not remeasured")
    parser.add_argument("--measure", type=Path, help="only write this checkout's numbers to this .npz")
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.measure)
        return 0
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            _measure_in(ROOT, Path(tmp) / "after.npz")
            return 0 if compare(args.before, Path(tmp) / "after.npz", args.tol) else 1
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        for where, out in ((tree, Path(tmp) / "before.npz"), (ROOT, Path(tmp) / "after.npz")):
            _measure_in(where, out)
        return 0 if compare(Path(tmp) / "before.npz", Path(tmp) / "after.npz", args.tol) else 1


def _measure_in(where: Path, out: Path) -> None:
    """This script run as a file from `where`, so that `import variants` finds that revision's package first."""
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", str(out)], cwd=where, check=True,
                   env={**os.environ, "PYTHONPATH": str(where), "JAX_PLATFORMS": "cpu"})


if __name__ == "__main__":
    sys.exit(main())
