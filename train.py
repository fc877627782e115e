"""Train one recurrent cell on one task:  python train.py cell=nig lr=1e-3

A thin Hydra entry point: it composes conf/ and calls `training.train`, which tests import directly.
Records land in Hydra's output directory (see README: "What a run leaves").
"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

import training
from training.devices import configure_host
from training.logs import configure_logging

log = logging.getLogger("odyssey")
configure_logging()  # the libraries' INFO lines off from the start; main() applies `verbose`


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg) -> float | None:
    hc = HydraConfig.get()
    configure_logging(cfg.verbose)
    try:
        configure_host(cfg.speed)  # before JAX starts: the device count is fixed per process
    except ValueError:
        pass  # training.train's config check refuses it and records the trial as failed
    try:
        result = training.train(cfg, run_dir=hc.runtime.output_dir)
    except ValueError:  # bad config or data: already logged in one line; result.json holds the traceback
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(1)
        return None  # in a sweep the trial is recorded and the sweep goes on
    except Exception:
        if hc.mode != RunMode.MULTIRUN:
            raise
        return None
    test = result.get("test") or {}
    return test.get(result["objective"]["name"])  # what an optimizing sweeper would read


if __name__ == "__main__":
    if unknown := training.config.unknown_cell_choice(sys.argv[1:]):  # Hydra's error would not say how to add one
        sys.exit(unknown)
    main()
