"""fggp.transformers.PruningCallback inside a real transformers.Trainer: tiny BERT and GPT-2
built from configs (random weights, no download), generated data, CPU, a few dozen steps."""

import os
import types
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

import fggp_core as F  # noqa: E402
from fggp.transformers import STATE_FILE, PruningCallback, default_prunable  # noqa: E402
from fggp.transformers.callback import _refuse_unsupported  # noqa: E402

VOCAB, LENGTH = 50, 8


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=LENGTH, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return transformers.BertForSequenceClassification(config)


def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=LENGTH, n_embd=16, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    return transformers.GPT2LMHeadModel(config)


def data(n=32, lm=False):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
    if lm:
        return [{"input_ids": x, "labels": x} for x in ids]
    labels = (ids[:, 0] % 2).tolist()
    return [{"input_ids": x, "attention_mask": torch.ones(LENGTH, dtype=torch.long), "labels": y}
            for x, y in zip(ids, labels)]


def trainer_for(model, callback, out, **kwargs):
    options = dict(
        output_dir=str(out), per_device_train_batch_size=4, learning_rate=1e-2, report_to="none", use_cpu=True,
        logging_steps=2, save_strategy="no", seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    options.update(kwargs)
    args = transformers.TrainingArguments(**options)
    dataset = data(lm=isinstance(model, transformers.GPT2LMHeadModel))
    return transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])


def schedule():
    return F.PolynomialSchedule(0.0, 0.5, 2, 10, 2)


def host_masks(callback):
    return {n: m.cpu().clone() for n, m in callback.pruner.masks.items()}


def test_default_prunable_is_attention_and_mlp_projections_only():
    bert = default_prunable(tiny_bert())
    assert bert and all(n.startswith("bert.encoder.layer.") and n.endswith(".weight") for n in bert)
    assert {n.split(".")[-2] for n in bert} == {"query", "key", "value", "dense"}
    gpt2 = default_prunable(tiny_gpt2())
    assert {n.split(".", 3)[-1] for n in gpt2} == {"attn.c_attn.weight", "attn.c_proj.weight",
                                                   "mlp.c_fc.weight", "mlp.c_proj.weight"}
    assert not any("wte" in n or "wpe" in n or "lm_head" in n or "ln_" in n for n in gpt2)


def test_bert_with_accumulation_counts_trainer_steps_logs_sparsity_and_saves_exact_zeros(tmp_path):
    model = tiny_bert()
    callback = PruningCallback(F.FGGP(), schedule())
    trainer = trainer_for(model, callback, tmp_path, gradient_accumulation_steps=2, max_steps=12)
    trainer.train()
    assert callback.pruner.step == trainer.state.global_step == 12
    assert [e.step for e in callback.events] == [2, 4, 6, 8, 10]
    assert callback.sparsity() == pytest.approx(0.5, abs=1e-3)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [2, 4, 6, 8, 10, 12]
    assert logged[-1]["sparsity"] == callback.sparsity() and logged[0]["sparsity"] < logged[-1]["sparsity"]
    trainer.save_model(str(tmp_path / "final"))
    saved = safetensors_torch.load_file(str(tmp_path / "final" / "model.safetensors"))
    for name, mask in callback.pruner.masks.items():
        assert torch.all(saved[name][~mask.cpu()] == 0.0), name
    report = callback.layer_report()
    assert set(report) == set(default_prunable(model))


def test_resume_from_checkpoint_gives_the_masks_of_an_uninterrupted_run(tmp_path):
    full = PruningCallback(F.FGGP(), schedule())
    trainer = trainer_for(tiny_bert(), full, tmp_path / "a", max_steps=12, save_strategy="steps", save_steps=6)
    trainer.train()
    checkpoint = tmp_path / "a" / "checkpoint-6"
    assert (checkpoint / STATE_FILE).is_file()

    resumed = PruningCallback(F.FGGP(), schedule())
    trainer = trainer_for(tiny_bert(), resumed, tmp_path / "a", max_steps=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "resumes without saved pruning state"
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.pruner.step == 12
    assert [e.step for e in resumed.events] == [8, 10]
    assert [(e.k, e.pruned) for e in resumed.events] == [(e.k, e.pruned) for e in full.events[-2:]]
    expected, got = host_masks(full), host_masks(resumed)
    assert all(torch.equal(expected[n], got[n]) for n in expected)


def test_gpt2_default_set_reaches_the_target_and_events_reach_on_event(tmp_path):
    seen = []
    callback = PruningCallback(F.Magnitude(), schedule(), scope="layerwise", on_event=seen.append)
    trainer = trainer_for(tiny_gpt2(), callback, tmp_path, max_steps=10, num_train_epochs=3)
    trainer.train()
    assert [r.step for r in seen] == [2, 4, 6, 8, 10]
    last = seen[-1]
    assert last.target_sparsity == 0.5 and set(last.density) == set(default_prunable(trainer.model))
    assert all(d == pytest.approx(0.5, abs=1e-2) for d in last.density.values())
    assert last.seconds >= 0.0


def test_no_prunable_parameter_is_refused_before_the_first_step(tmp_path):
    model = tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    callback = PruningCallback(F.Magnitude(), schedule(), prunable=lambda name, p: False)
    trainer = trainer_for(model, callback, tmp_path, max_steps=4)
    with pytest.raises(F.ConfigError, match="prunable"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("field", ["deepspeed", "fsdp"])
def test_deepspeed_and_fsdp_are_refused(field):
    args = types.SimpleNamespace(deepspeed=None, fsdp=None, output_dir=".")
    setattr(args, field, "full_shard" if field == "fsdp" else {"zero_optimization": {"stage": 3}})
    model = torch.nn.Linear(2, 2)
    with pytest.raises(F.ConfigError, match="DeepSpeed or FSDP"):
        _refuse_unsupported(args, model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_a_layerwise_optimizer_is_refused():
    class LayerWiseDummyOptimizer(torch.optim.SGD):
        pass

    model = torch.nn.Linear(2, 2)
    args = types.SimpleNamespace(deepspeed=None, fsdp=None, output_dir=os.getcwd())
    with pytest.raises(F.ConfigError, match="one torch optimizer"):
        _refuse_unsupported(args, model, LayerWiseDummyOptimizer(model.parameters(), lr=0.1))
