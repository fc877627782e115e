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
from training.config import check_command_line
from training.devices import configure_host
from training.interrupt import Interrupted, hand_over
from training.logs import configure_logging, quiet_handler_errors
from training.records import job_configs

log = logging.getLogger("odyssey")
configure_logging()  # the libraries' INFO lines off from the start; main() applies `verbose`
quiet_handler_errors()  # a log file that cannot be written (a full disk) is said once, not with a traceback per line


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg) -> float | None:
    hc = HydraConfig.get()
    configure_logging(cfg.verbose)
    try:
        configure_host(cfg.speed)  # before JAX starts: the device count is fixed per process
    except ValueError:
        pass  # training.train's config check refuses it and records the trial as failed
    # conf/config.yaml sets hydra.output_subdir to null: the run writes .hydra/ itself once it takes the folder
    files = job_configs(cfg, HydraConfig.instance().cfg, hc.overrides.task) if hc.output_subdir is None else None
    try:
        result = training.train(cfg, run_dir=hc.runtime.output_dir, job_configs=files)
    except Interrupted as e:  # recorded as interrupted; under submitit (launch=slurm) its handler requeues the job
        hand_over(e)
        raise
    except Exception as e:
        if hc.mode == RunMode.MULTIRUN:
            return None  # the trial is recorded and the sweep goes on
        if getattr(e, "odyssey_logged", False) and not cfg.verbose:
            sys.exit(1)  # said in one line (bad config or data, a refused folder, a failure; result.json keeps the traceback)
        raise
    test = result.get("test") or {}
    return test.get(result["objective"]["name"])  # what an optimizing sweeper would read


if __name__ == "__main__":
    if unknown := training.config.unknown_cell_choice(sys.argv[1:]):  # Hydra's error would not say how to add one
        sys.exit(unknown)
    # before Hydra composes (and so before anything is written): unknown keys, however added (`+hiden=64`
    # composes), and unknown cell/task/optimizer/launch names, in one line naming the closest known one
    problems = check_command_line(sys.argv[1:])
    if problems:
        sys.exit("error: " + "; ".join(problems) + ".")
    try:
        main()
    except Interrupted as e:  # SIGTERM or SIGINT: the run recorded itself as interrupted and said so
        sys.exit(e.exit_code)
