"""One source for every default (issue 28, item 4): conf/ holds the values a run starts from, and code reads
them from the composed config. A default written again in code drifts from conf/ unseen (a key the schema
guarantees never needs one), so this test reads every leaf `key: value` of conf/ and flags code that holds
the same value for the same key name: `.get("key", value)` (or `.get("key")` where conf/ holds null),
`getattr(x, "key", value)`, a parameter default, dataclass field or class attribute named `key` with that
value, a keyword of dict(...) or SimpleNamespace(...), a dict entry `"key": value`, and
`dict.fromkeys(<names holding "key">, value)`; and any `.get(...)` of a key the schema guarantees on a config
(cfg, config, run.cfg), whatever its default.

A grep-level check, by name and value (an AST walk, so formatting does not hide a line): it cannot tell a
config from another object of the same key, so a line that is no default of conf/'s goes into ALLOWED with
its reason. By value, it sees a copy only while the copy still equals conf/; so an ALLOWED line that stops
matching fails the test too (conf/ changed: look at the copy again)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from omegaconf import OmegaConf

from conftest import ROOT
from training.config import Schema

CONF = ROOT / "conf"
CODE = [*(ROOT / d for d in ("training", "tasks", "sweeps", "variants", "paths", "hydra_plugins", "benchmarks")),
        ROOT / "train.py"]
NOT_A_VALUE = ("defaults", "_target_")  # Hydra's own keys: a defaults list, a class path
NULL = object()  # conf/'s null, matched only by .get/getattr (None is every optional parameter's "not given")

# (file, line) of code that holds a conf/ value under a conf/ key's name and is not a copy of conf/'s default, with
# why. A line stays here only while it still matches: when conf/ changes the value, the entry goes stale and the
# test says so, so a library default that happened to equal conf/'s is looked at again.
RECORD = "a record's config, written by whichever code version made the record (older ones lack keys added since)"
MODULE = ("a module's plain setting for models built in code (tests, benchmarks, docs/cells.md): one layer, one "
          "direction, no dropout; runs pass the config's (training.model.model_from_config)")
CELL = ("the cell library's value for cells built without a config (variants.make_cell in tests, benchmarks, "
        "docs/cells.md); runs pass conf/cell_defaults/gated.yaml's through the registry")
RNG = "the random stream of a statistic (bootstrap, forest) or a benchmark's batch, not a run's seed"
ALLOWED: dict[tuple[str, str], str] = {
    ("training/logs.py", "def configure_logging(verbose: bool = False) -> None:"):
        "logging before any config is composed (train.py at import, training.evaluate's command line): quiet "
        "until a config says otherwise",
    ("training/model.py", "layers: int = 1"): MODULE,
    ("training/model.py", "bidirectional: bool = False"): MODULE,
    ("training/model.py", "dropout: float = 0.0"): MODULE,
    ("variants/layer.py", "layers: int = 1"): MODULE,
    ("variants/layer.py", "bidirectional: bool = False"): MODULE,
    ("variants/layer.py", "dropout: float = 0.0  # between stacked layers, during training only"): MODULE,
    ("variants/gated.py", "forget_bias: float = 1.0  # b_f starts here: remembering by default helps gradients "
                          "flow early (Jozefowicz et al. 2015)"): CELL,
    ("variants/gated.py", "def build(spec: GateSpec, name: str, hidden: int, dtype=None, switches: dict | None = "
                          "None, forget_bias: float = 1.0,"): CELL,
    ("training/run.py", 'unread = unread_cell_keys(config.get("cell") or {})'): RECORD,
    ("sweeps/report.py", 'optimizer = cfg.get("optimizer") or {}'): RECORD,
    ("sweeps/report.py", 'input_noise=hyperparameter(cfg.get("input_noise") or 0.0, "input_noise"), '
                         'seed=cfg.get("seed"),'): RECORD,
    ("tasks/__init__.py", "def task_from_conf(name: str, download: bool = False, **changes) -> Task:"):
        "a task built outside a run (tests, notebooks, benchmarks) fetches nothing unless asked",
    ("sweeps/evidence.py", 'def effect(a, b, statistic: str = "mean", seed: int = 0) -> dict:'): RNG,
    ("sweeps/evidence.py", "def analyse(trials: list[Trial], seed: int = 0, trees: int | None = None,"): RNG,
    ("sweeps/evidence.py", "def importance(trials: list[Trial], seed: int = 0, trees: int | None = None) -> "
                           "tuple[dict[str, float] | None, str]:"): RNG,
    ("sweeps/evidence.py", "def fanova_shares(X: np.ndarray, y: np.ndarray, subsets: list[tuple[int, ...]], "
                           "seed: int = 0,"): RNG,
    ("sweeps/evidence.py", "level: float = 0.95, seed: int = 0) -> tuple[dict[str, tuple[float, float]], int]:"): RNG,
    ("benchmarks/throughput.py", "def random_batch(T: int, D: int, B: int, seed: int = 0) -> dict:"): RNG,
    ("benchmarks/population.py", "mix_variants: bool = False) -> None:"):
        "the benchmark's own switch (also time mixed populations), not the launcher's setting",
}


# top-level keys the schema (training/config.py) guarantees every composed config has
GUARANTEED = {f.name for f in dataclasses.fields(Schema)}


def is_config(node) -> bool:
    """Whether `node` names a composed config: cfg, config, or an attribute of that name (run.cfg, self.config)."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return name in ("cfg", "config")


def conf_values() -> dict[str, set]:
    """{leaf key: the values conf/ gives it anywhere} (interpolations left out: they hold no value)."""
    found: dict[str, set] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in NOT_A_VALUE:
                    continue
                if isinstance(value, (dict, list)):
                    walk(value)
                elif not (isinstance(value, str) and "${" in value):
                    found.setdefault(str(key), set()).add(NULL if value is None else value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(CONF.rglob("*.yaml")):
        walk(OmegaConf.to_container(OmegaConf.load(path), resolve=False))  # YAML 1.1 as Hydra reads it: 1e-3 a float
    return found


def literal(node):
    """A node's Python value when it is a literal (a constant, or a -constant), else a marker no conf value equals."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


_NOT_LITERAL = object()


def same(code_value, conf: set, null_matches: bool) -> bool:
    if code_value is _NOT_LITERAL or isinstance(code_value, (dict, list, tuple, set)):
        return False
    if code_value is None:
        return null_matches and NULL in conf
    # True == 1 in Python: a bool matches only a bool, a number only a number
    return any(type(v) is type(code_value) or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and isinstance(code_value, (int, float)) and not isinstance(code_value, bool))
               for v in conf if v is not NULL and v == code_value)


def string_tuples(tree: ast.Module) -> dict[str, tuple]:
    """Module-level NAME = ("a", "b", ...) tuples of strings (what dict.fromkeys(NAME, value) fills)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = literal(node.value)
            if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
                out[node.targets[0].id] = tuple(value)
    return out


def defaults_in(source: str, values: dict[str, set]) -> list[tuple[int, str, object]]:
    """(line, key, value) of every place in `source` that holds a conf/ value under its key's name."""
    tree = ast.parse(source)
    tuples = string_tuples(tree)
    hits = []

    def check(node, key, value_node, null_matches=False, implicit_none=False):
        if isinstance(key, str) and key in values:
            value = None if implicit_none else literal(value_node)
            if same(value, values[key], null_matches):
                hits.append((node.lineno, key, value))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func, args = node.func, node.args
            key = literal(args[0]) if args else None
            if isinstance(func, ast.Attribute) and func.attr == "get" and len(args) in (1, 2):
                check(node, key, args[1] if len(args) == 2 else None, null_matches=True, implicit_none=len(args) == 1)
                if key in GUARANTEED and is_config(func.value):  # whatever the default: the key is always there
                    hits.append((node.lineno, key, "a fallback"))
            if isinstance(func, ast.Name) and func.id == "getattr" and len(args) == 3:
                check(node, literal(args[1]), args[2], null_matches=True)
            if (isinstance(func, ast.Attribute) and func.attr == "fromkeys" and len(args) == 2
                    and isinstance(args[0], ast.Name) and args[0].id in tuples):
                for name in tuples[args[0].id]:
                    check(node, name, args[1])
            if isinstance(func, ast.Name) and func.id in ("dict", "SimpleNamespace"):  # a config built in code
                for kw in node.keywords:
                    check(kw.value, kw.arg, kw.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            for arg, default in zip(positional[len(positional) - len(a.defaults):], a.defaults):
                check(default, arg.arg, default)
            for arg, default in zip(a.kwonlyargs, a.kw_defaults):
                if default is not None:
                    check(default, arg.arg, default)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    check(item, item.target.id, item.value)
                elif isinstance(item, ast.Assign):
                    for target in item.targets:
                        if isinstance(target, ast.Name):
                            check(item, target.id, item.value)
                        elif isinstance(target, ast.Tuple) and isinstance(item.value, ast.Tuple):
                            for t, v in zip(target.elts, item.value.elts):
                                if isinstance(t, ast.Name):
                                    check(item, t.id, v)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if k is not None:
                    check(v, literal(k), v)
    return sorted(set(hits), key=lambda h: h[0])


def scan() -> tuple[list[str], set]:
    """(code lines holding a conf/ default, not allowed; the ALLOWED entries still found)."""
    values, found, allowed = conf_values(), [], set()
    for root in CODE:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            source = path.read_text()
            lines = source.splitlines()
            for line, key, value in defaults_in(source, values):
                where = (str(path.relative_to(ROOT)), lines[line - 1].strip())
                if where in ALLOWED:
                    allowed.add(where)
                else:
                    found.append(f"{where[0]}:{line}: {key}={value!r} (conf/ holds it): {where[1]}")
    return found, allowed


def test_no_code_holds_a_default_that_conf_holds():
    found, allowed = scan()
    assert found == [], "read these from the composed config (or conf/), or add them to ALLOWED with the reason"
    assert set(ALLOWED) - allowed == set(), "stale ALLOWED entries: conf/ or the line changed; look at them again"


REMOVED = {  # what this test was written against (issue 28, item 4), one line each as it stood
    "cfg.get(key, default) on a key the schema guarantees": 'configure_logging(bool(config.get("verbose", False)))',
    "a .get() whose missing default is conf/'s null": 'backend = speed_rules.backend_of(cfg.get("platform"))',
    "speed_rules.AUTO": 'AUTO = SimpleNamespace(**dict.fromkeys(PATHS, "auto"))',
    "an in-code width_bucket": 'def plan_populations(cfgs, max_size=None, width_bucket="auto", mix_variants=False): ...',
    "a launcher schema's value": 'class PopulationLauncherConf:\n    width_bucket: Any = "auto"',
    "an optimizer config copied into a benchmark": 'class Adam:\n    name, b1, b2, eps = "adam", 0.9, 0.999, 1e-8',
    "a schema field's value": "class Schema:\n    verbose: bool = False",
}


def test_the_check_finds_each_kind_of_copy_it_was_written_against():
    values = conf_values()
    source = "PATHS = ('unroll', 'hoist_projection')\n"
    for what, line in REMOVED.items():
        assert defaults_in(source + line, values), f"{what} not found: {line}"
    assert not defaults_in("x = cfg.verbose\nbackend = speed_rules.backend_of(cfg.platform)\n", values)
