"""rt-smile train's Trainer on a tiny configuration: both stages, class term, anchors, weights
that load, and a resumed run that does not train again."""

from __future__ import annotations

from pathlib import Path

import torch

from rt_smile.io.checkpoint import load_cmmnet, read_info
from rt_smile.train.trainer import TrainConfig, Trainer, synth_data

TINY = TrainConfig(
    n_sequences=40, n_identities=10, length=40, vae_steps=30, vae_batch=64, gen_steps=6,
    gen_batch=8, w_class=0.05, class_steps=10, log_every=2, checkpoint_every=3,
)  # fmt: skip


def test_tiny_training_writes_loadable_weights_with_anchors(tmp_path: Path) -> None:
    trainer = Trainer(TINY, synth_data(TINY), tmp_path / "run", command="test")
    weights = trainer.run(progress=False)
    model = load_cmmnet(weights)
    assert model.config.anchors == len(trainer.train_set)
    assert model.anchor_codes.abs().sum() > 0, "the training faces' codes are kept"
    assert read_info(weights)["train_config"]["w_class"] == 0.05
    logged = [r for r in trainer.log if r["stage"] == "generator"]
    assert logged and all("class" in r for r in logged)
    assert (tmp_path / "run" / "train_loss.png").is_file()

    again = Trainer(TINY, synth_data(TINY), tmp_path / "run")
    assert again.try_resume() and again.stage == "done"
    before = {k: v.clone() for k, v in again.model.state_dict().items()}
    again.run(progress=False)
    for k, v in again.model.state_dict().items():
        if not k.startswith("anchor_"):
            assert torch.equal(v, before[k]), f"{k} changed: a finished run is not trained again"
