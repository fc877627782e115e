"""The optimizers (training/optim.py): Adam, and SGD with Nesterov momentum as Greff et al. trained."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import OmegaConf

from sweeps.presets import compose_preset
from training.optim import make_optimizer

SGD = {"name": "sgd", "momentum": 0.9, "nesterov": False, "lr_times_one_minus_momentum": False}


@pytest.mark.parametrize("scaled, factor", [(False, 1.0), (True, 0.1)])
def test_greffs_sgd_step_is_lr_times_one_minus_momentum_times_the_gradient(scaled, factor):
    """Greff's code (pylstm's scale_learning_rate, its default) multiplies the learning rate by 1 - momentum,
    so momentum's 1 / (1 - m) gain does not also enlarge the step; plain SGD steps lr * gradient."""
    tx = make_optimizer(OmegaConf.create({**SGD, "lr_times_one_minus_momentum": scaled}), lr=0.5)
    params, grads = {"w": jnp.zeros(3)}, {"w": jnp.array([1.0, -2.0, 4.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5 * factor * grads["w"], rtol=1e-6)


def test_the_greff_jsb_preset_trains_in_greffs_regime():
    """Updates after every sequence, the loss summed over each piece, the step scaled by 1 - momentum,
    at most 150 epochs with 15 epochs' patience, over Greff's search space."""
    cfg = compose_preset("greff_jsb", ["cell=v"])
    assert (cfg.task.name, cfg.batch_size, cfg.task.loss) == ("jsb", 1, "per_sequence")
    assert (cfg.optimizer.name, cfg.optimizer.nesterov, cfg.optimizer.lr_times_one_minus_momentum) == ("sgd", True, True)
    assert (cfg.epochs, cfg.patience) == (150, 15)
    params = dict(cfg.hydra.sweeper.params)
    assert params["lr"] == "tag(log, interval(1e-6, 1e-2))" and params["hidden"] == "tag(log, int(interval(20, 200)))"
