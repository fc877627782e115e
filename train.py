"""Train one recurrent cell on one task:  python train.py cell=nig lr=1e-3

A thin Hydra entry point: it composes conf/ and calls `training.train`, which tests import directly.
Records land in Hydra's output directory (see README: "What a run leaves").
"""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

import training
from training.devices import configure_cpu_devices

log = logging.getLogger("odyssey")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg) -> float | None:
    hc = HydraConfig.get()
    configure_cpu_devices(cfg.speed.cpu_devices)  # before JAX starts: the device count is fixed per process
    try:
        result = training.train(cfg, run_dir=hc.runtime.output_dir)
    except Exception:
        if hc.mode != RunMode.MULTIRUN:
            raise
        # in a sweep, a crashed trial is recorded as failed (result.json) and the sweep goes on
        log.exception("trial failed; recorded in %s/result.json", hc.runtime.output_dir)
        return None
    test = result.get("test") or {}
    return test.get(result["objective"]["name"])  # what an optimizing sweeper would read


if __name__ == "__main__":
    main()
