"""fggp.lightning.PruningCallback inside a real lightning.pytorch.Trainer (CPU, a small module)."""

import warnings

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

import fggp_core as F  # noqa: E402
from fggp.lightning import PruningCallback  # noqa: E402


class Small(L.LightningModule):
    def __init__(self, optimizers=1):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        self.count = optimizers

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        if self.count == 1:
            return torch.optim.Adam(self.parameters(), lr=1e-2)
        return [torch.optim.SGD(self.net[0].parameters(), lr=0.1), torch.optim.SGD(self.net[2].parameters(), lr=0.1)]


def loader():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def trainer(tmp_path, callback, **kwargs):
    options = dict(
        accelerator="cpu", devices=1, max_steps=12, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), enable_checkpointing=False,
    )
    options.update(kwargs)
    return L.Trainer(callbacks=[callback], **options)


def schedule():
    return F.PolynomialSchedule(0.0, 0.6, 2, 10, 2)


def test_fit_with_accumulation_counts_global_steps_and_logs_sparsity(tmp_path):
    callback = PruningCallback(F.FGGP(), schedule())
    fit = trainer(tmp_path, callback, accumulate_grad_batches=2)
    fit.fit(Small(), loader())
    assert callback.pruner.step == fit.global_step == 12
    assert [e.step for e in callback.events] == [2, 4, 6, 8, 10]
    assert callback.sparsity() == pytest.approx(0.6, abs=1e-3)
    assert fit.callback_metrics["sparsity"].item() == pytest.approx(callback.sparsity())
    model = fit.lightning_module
    for name, mask in callback.pruner.masks.items():
        assert torch.all(dict(model.named_parameters())[name][~mask] == 0.0)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # Lightning: the checkpoint callbacks
def test_resume_from_ckpt_path_gives_the_masks_of_an_uninterrupted_run(tmp_path):
    later = F.PolynomialSchedule(0.0, 0.6, 2, 14, 2)
    full = PruningCallback(F.FGGP(), later)
    every8 = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=8, save_top_k=-1)
    fit = trainer(tmp_path / "full", full, max_steps=16, enable_checkpointing=True)
    fit.callbacks.append(every8)
    fit.fit(Small(), loader())
    (checkpoint,) = (tmp_path / "ckpt").glob("*step=8.ckpt")

    resumed = PruningCallback(F.FGGP(), later)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "resumes without saved pruning state"
        fit = trainer(tmp_path / "resumed", resumed, max_steps=16)
        fit.fit(Small(), loader(), ckpt_path=checkpoint)
    assert resumed.pruner.step == fit.global_step == 16
    assert [e.step for e in resumed.events] == [10, 12, 14]
    assert [(e.k, e.pruned) for e in resumed.events] == [(e.k, e.pruned) for e in full.events[-3:]]
    assert all(torch.equal(full.pruner.masks[n], resumed.pruner.masks[n]) for n in full.pruner.masks)


def test_several_optimizers_are_refused_at_fit_start(tmp_path):
    class Manual(Small):
        def __init__(self):
            super().__init__(optimizers=2)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

    with pytest.raises(F.ConfigError, match="exactly one optimizer"):
        trainer(tmp_path, PruningCallback(F.Magnitude(), schedule())).fit(Manual(), loader())


def test_a_state_of_another_configuration_is_refused(tmp_path):
    callback = PruningCallback(F.Magnitude(), schedule())
    trainer(tmp_path, callback, max_steps=2).fit(Small(), loader())
    other = PruningCallback(F.Magnitude(), F.PolynomialSchedule(0.0, 0.9, 2, 10, 2))
    with pytest.raises(F.ConfigError, match="schedule"):
        other.load_state_dict(callback.state_dict())


class SaveMasks(L.Callback):
    def __init__(self, folder, pruning):
        self.folder, self.pruning = folder, pruning

    def on_train_end(self, trainer, pl_module):
        masks = {n: m.clone() for n, m in self.pruning.pruner.masks.items()}
        weights = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
        torch.save({"masks": masks, "weights": weights, "step": self.pruning.pruner.step},
                   f"{self.folder}/rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_identical_masks(tmp_path):
    callback = PruningCallback(F.FGGP(), schedule())
    fit = trainer(tmp_path, callback, devices=2, strategy="ddp_spawn", num_nodes=1)
    fit.callbacks.append(SaveMasks(str(tmp_path), callback))
    fit.fit(Small(), loader())
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 12
    masks = [r["masks"] for r in ranks]
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])
    pruned = sum(int((~m).sum()) for m in masks[0].values())
    total = sum(m.numel() for m in masks[0].values())
    assert pruned == round(0.6 * total)
    assert all(torch.equal(ranks[0]["weights"][n], ranks[1]["weights"][n]) for n in ranks[0]["weights"])
