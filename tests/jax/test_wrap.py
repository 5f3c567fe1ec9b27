"""fggp.jax.wrap under jax.jit: the same masks as the core at every event, exact counts,
pruned params and optimizer moments exactly zero, and composition with optax."""

from __future__ import annotations

import re
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fggp.jax as fj
import fggp_core as F
from fggp.jax.transform import IN_PLACE_MIN_SIZE
from tests.harness import assert_same_masks
from tests.jax.mlp import batch, init_params, kernels, loss, pruned_count, train_step

SCHEDULE = F.PolynomialSchedule(0.0, 0.8, begin_step=2, end_step=14, frequency=3)
N = 12 * 24 + 24 * 16 + 16 * 5


@pytest.mark.parametrize(
    "method, scope",
    [
        (F.FGGP(0.5), "global"),
        (F.TwoStage("magnitude", "gradient", extra_fraction=F.CosineRate(0.5, 0.005, 16)), "layerwise"),
        (F.Random(3), "global"),
        (F.Taylor(), "layerwise"),
        (F.GlobalMP(20), "global"),
    ],
    ids=["fggp", "granet-cosine-layerwise", "random", "taylor-layerwise", "global_mp"],
)
def test_jitted_training_matches_the_core_pruner_at_every_event(method, scope):
    """At each event, the core Pruner given the captured inputs (this step's gradients and the
    weights after the inner update) prunes exactly what the jitted wrapper pruned."""
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.adam(1e-2), method, SCHEDULE, scope=scope)
    state = tx.init(params)
    update, grad = jax.jit(tx.update), jax.jit(jax.grad(loss))
    pruner = F.Pruner(method, SCHEDULE, scope=scope)
    pruner.init_masks({n: np.asarray(w) for n, w in kernels(params).items()})
    for _ in range(17):
        g = grad(params, x, y)
        # The same compiled update at a count that is no event returns the inner update as is
        # on active entries: params + it are the weights the event selects with.
        probe, _ = update(g, state._replace(count=jnp.int32(-1)), params)
        updates, state = update(g, state, params)
        weights = kernels(optax.apply_updates(params, probe))
        report = pruner.on_step({n: np.asarray(w) for n, w in weights.items()},
                                {n: np.asarray(v) for n, v in kernels(g).items()})
        params = optax.apply_updates(params, updates)
        assert_same_masks(kernels(fj.masks(state)), pruner.masks)
        if report is not None:
            assert pruned_count(fj.masks(state)) == report.pruned
    shapes = {n: tuple(w.shape) for n, w in kernels(params).items()}
    target = round(N * 0.8) if scope == "global" else sum(F.layer_targets(shapes, 0.8).values())
    assert pruned_count(fj.masks(state)) == target
    for name, m in kernels(fj.masks(state)).items():
        assert np.all(np.asarray(kernels(params)[name])[~np.asarray(m)] == 0.0), name


def test_pruned_params_are_zero_and_adam_moments_never_revive_them():
    """Params: zero at every step. Adam moments: zeroed before the inner step reads them, so
    every entry pruned before a step has zero moments after it (fresh prunes: one step later)."""
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.adamw(1e-2, weight_decay=1e-2), F.FGGP(0.5), SCHEDULE)
    state, step = tx.init(params), train_step(tx)
    for _ in range(16):
        before = fj.masks(state)
        params, state = step(params, state, x, y)
        masks, adam = fj.masks(state), state.inner[0]
        for layer in params:
            assert np.all(np.asarray(params[layer]["kernel"])[~np.asarray(masks[layer]["kernel"])] == 0.0)
            for moment in (adam.mu, adam.nu):
                assert np.all(np.asarray(moment[layer]["kernel"])[~np.asarray(before[layer]["kernel"])] == 0.0)
            assert masks[layer]["bias"] is None, "non-prunable leaves have no mask"
    assert pruned_count(fj.masks(state)) == round(N * 0.8)


def test_a_donated_state_is_updated_in_place_between_events():
    """With params and state donated, the compiled step copies no large float array (at least
    ``IN_PLACE_MIN_SIZE`` entries) that the inner optimizer's step does not copy: the inner update
    reads its large state after the event's conditional, so XLA updates the moments in place (it
    had copied both Adam moments into the conditional at every step, about 2x an MLP step on CPU)."""
    params = init_params(sizes=(256, 256, 256, 5))  # kernels of 2**16 entries: IN_PLACE_MIN_SIZE
    x, y = batch(features=256)

    def float_copies(tx: optax.GradientTransformation) -> Counter:
        def step(p, s):
            u, s = tx.update(jax.grad(loss)(p, x, y), s, p)
            return optax.apply_updates(p, u), s

        text = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params)).compile().as_text()
        shapes = re.findall(r"= f32\[([\d,]+)\]\{[^}]*\} copy\(", text[text.index("ENTRY"):])
        return Counter(s for s in shapes if np.prod([int(d) for d in s.split(",")]) >= IN_PLACE_MIN_SIZE)

    inner = float_copies(optax.adam(1e-2))
    assert not float_copies(fj.wrap(optax.adam(1e-2), F.FGGP(0.5), SCHEDULE)) - inner


def test_multisteps_events_count_real_optimizer_steps():
    """Accumulating 3 identical mini-batches per step is the plain run, step for step."""
    params, (x, y) = init_params(), batch()
    plain = fj.wrap(optax.sgd(0.1, momentum=0.9), F.FGGP(0.5), SCHEDULE)
    multi = optax.MultiSteps(fj.wrap(optax.sgd(0.1, momentum=0.9), F.FGGP(0.5), SCHEDULE), every_k_schedule=3)
    p1, s1, step1 = params, plain.init(params), train_step(plain)
    p2, s2, step2 = params, multi.init(params), train_step(multi)
    for _ in range(15):
        p1, s1 = step1(p1, s1, x, y)
        for _ in range(3):
            p2, s2 = step2(p2, s2, x, y)
        assert_same_masks(kernels(fj.masks(s2)), {n: np.asarray(m) for n, m in kernels(fj.masks(s1)).items()})
    assert pruned_count(fj.masks(s2)) == round(N * 0.8)
    assert int(fj.report.find_state(s2).count) == 15


def test_chain_inner_state_momentum_is_masked():
    params, (x, y) = init_params(), batch()
    inner = optax.chain(optax.clip_by_global_norm(1.0), optax.trace(0.9), optax.scale(-0.05))
    tx = fj.wrap(inner, F.Magnitude(), SCHEDULE, scope="layerwise", distribution="erk")
    state, step = tx.init(params), train_step(tx)
    for _ in range(15):
        params, state = step(params, state, x, y)
    masks, trace = fj.masks(state), state.inner[1].trace
    shapes = {n: tuple(m.shape) for n, m in kernels(masks).items()}
    expected = F.layer_targets(shapes, 0.8, "erk")
    assert {n: int((~np.asarray(m)).sum()) for n, m in kernels(masks).items()} == expected
    for layer in params:
        pruned = ~np.asarray(masks[layer]["kernel"])
        assert np.all(np.asarray(trace[layer]["kernel"])[pruned] == 0.0)
        assert np.all(np.asarray(params[layer]["kernel"])[pruned] == 0.0)


def test_resume_from_a_numpy_checkpoint_gives_the_uninterrupted_masks(tmp_path):
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.adam(1e-2), F.FGGP(0.5), SCHEDULE, sparse_start=F.SparseStart(0.3, "erk", seed=1))
    step = train_step(tx)
    state = tx.init(params)
    params = fj.apply_masks(params, state)
    p_full, s_full = params, state
    for _ in range(16):
        p_full, s_full = step(p_full, s_full, x, y)

    for _ in range(7):
        params, state = step(params, state, x, y)
    leaves = jax.tree.leaves((params, state))
    np.savez(tmp_path / "ckpt.npz", *[np.asarray(a) for a in leaves])
    template = (init_params(), tx.init(init_params()))  # a fresh process would build the same structure
    with np.load(tmp_path / "ckpt.npz") as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(leaves))]
    params, state = jax.tree.unflatten(jax.tree.structure(template), arrays)
    for _ in range(9):
        params, state = step(params, state, x, y)
    assert_same_masks(kernels(fj.masks(state)), {n: np.asarray(m) for n, m in kernels(fj.masks(s_full)).items()})
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p_full)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sparse_start_masks_are_the_core_draw():
    params = init_params()
    start = F.SparseStart(0.5, "erk", seed=7)
    state = fj.wrap(optax.sgd(0.1), F.FGGP(), SCHEDULE, sparse_start=start).init(params)
    expected = F.random_masks({n: tuple(w.shape) for n, w in kernels(params).items()}, start)
    assert_same_masks(kernels(fj.masks(state)), expected)
    zeroed = kernels(fj.apply_masks(params, state))
    assert all(np.all(np.asarray(zeroed[n])[~expected[n]] == 0.0) for n in expected)


def test_nonfinite_gradient_at_an_event_under_jit_skips_and_check_names_the_leaf():
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.sgd(0.1), F.FGGP(0.5), SCHEDULE)
    state, update, grad = tx.init(params), jax.jit(tx.update), jax.jit(jax.grad(loss))
    for t in range(1, 6):
        g = grad(params, x, y)
        if t == 5:  # an event step
            g["dense1"]["kernel"] = g["dense1"]["kernel"].at[0, 0].set(jnp.nan)
            before = pruned_count(fj.masks(state))
            updates, state = update(g, state, params)
            assert pruned_count(fj.masks(state)) == before, "a skipped event prunes nothing"
        else:
            updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
    assert fj.skipped_events(state) == 1
    with pytest.raises(F.NonFiniteScoreError, match=r"\['dense1'\]\['kernel'\].*gradient"):
        fj.check(state)


def test_nonfinite_gradient_in_an_eager_update_raises():
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.sgd(0.1), F.Magnitude(), F.OneShotSchedule(0.5, step=1))
    params["dense0"]["kernel"] = params["dense0"]["kernel"].at[1, 2].set(jnp.inf)
    with pytest.raises(F.NonFiniteScoreError, match=r"\['dense0'\]\['kernel'\]"):
        tx.update(jax.grad(loss)(params, x, y), tx.init(params), params)


def test_bad_inputs_raise_clear_errors():
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.sgd(0.1), F.FGGP(), SCHEDULE)
    with pytest.raises(F.ConfigError, match="prunable"):
        fj.wrap(optax.sgd(0.1), F.FGGP(), SCHEDULE, prunable=lambda path, leaf: False).init(params)
    with_ints = {**params, "table": jnp.zeros((3, 3), jnp.int32)}
    with pytest.raises(F.InputMismatchError, match="table"):
        fj.wrap(optax.sgd(0.1), F.FGGP(), SCHEDULE, prunable=lambda path, leaf: leaf.ndim == 2).init(with_ints)
    state = tx.init(params)
    grads = jax.grad(loss)(params, x, y)
    with pytest.raises(F.InputMismatchError, match="structure"):
        tx.update({"dense0": grads["dense0"]}, state, {"dense0": params["dense0"]})
    with pytest.raises(F.ConfigError, match="params"):
        tx.update(grads, state)
    with pytest.raises(F.ConfigError, match="MultiSteps"):
        fj.wrap(optax.MultiSteps(optax.sgd(0.1), 2), F.FGGP(), SCHEDULE)
    with pytest.raises(F.ConfigError, match="scope"):
        fj.wrap(optax.sgd(0.1), F.FGGP(), SCHEDULE, scope="per-layer")


def test_an_unreachable_globalmp_event_under_jit_skips_and_check_raises_the_cores_error():
    """min_keep reserves 300 per kernel: 0.8 of N is out of reach; the event is skipped, flagged,
    and ``check`` raises what ``fggp_core.select`` raises, with the failed group's k."""
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.sgd(0.1), F.GlobalMP(300), F.OneShotSchedule(0.8, step=1))
    state, step = tx.init(params), train_step(tx)
    params, state = step(params, state, x, y)
    assert fj.skipped_events(state) == 1 and pruned_count(fj.masks(state)) == 0
    step_, code, tensor, count, stage, k = (int(v) for v in fj.report.find_state(state).last_skip)
    assert (step_, code, stage, k) == (1, 2, 1, round(0.8 * N))  # [step, code, tensor, count, stage, k]
    with pytest.raises(F.UnreachableTargetError, match=rf"min_keep=300 .* only {count} unreserved .* k={k}"):
        fj.check(state)


def test_sparsity_and_layer_report_read_the_masks():
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.adam(1e-2), F.Magnitude(), SCHEDULE, scope="layerwise")
    state, step = tx.init(params), train_step(tx)
    assert fj.sparsity(state) == 0.0
    for _ in range(15):
        params, state = step(params, state, x, y)
    report = fj.layer_report(state)
    masks = kernels(fj.masks(state))
    assert list(report) == list(masks), "one entry per prunable leaf path, in flatten order"
    for name, m in masks.items():
        pruned = int((~np.asarray(m)).sum())
        assert report[name] == {"size": m.size, "pruned": pruned, "density": 1.0 - pruned / m.size}
    assert fj.sparsity(state) == pruned_count(fj.masks(state)) / N


def _prunable_paths(prunable, params):
    state = fj.wrap(optax.sgd(0.1), F.Magnitude(), SCHEDULE, prunable=prunable).init(params)
    return list(fj.layer_report(state))


def test_prunable_spellings_choose_leaves_by_keystr_path():
    params = {**init_params(), "embed": {"embedding": jnp.ones((10, 4))}, "conv": {"kernel": jnp.ones((3, 3, 2, 4))}}
    dense = ["['dense0']['kernel']", "['dense1']['kernel']", "['dense2']['kernel']"]
    assert _prunable_paths(None, params) == ["['conv']['kernel']", *dense], "default: ndim >= 2, no embedding"
    assert _prunable_paths(["['dense1']['kernel']", "['embed']['embedding']"], params) == [
        "['dense1']['kernel']", "['embed']['embedding']"
    ]
    assert _prunable_paths(lambda path, leaf: path.startswith("['dense0']") and leaf.ndim == 2, params) == dense[:1]
    flags = jax.tree.map(lambda leaf: leaf.ndim == 4, params)
    assert _prunable_paths(flags, params) == ["['conv']['kernel']"], "a pytree of bools still works"


def test_bad_prunable_values_raise_config_errors_naming_the_argument():
    params = init_params()
    with pytest.raises(F.ConfigError, match=r"prunable=\[\"\['nope'\]\"\].*leaf paths"):
        _prunable_paths(["['nope']"], params)
    with pytest.raises(F.ConfigError, match="prunable"):
        _prunable_paths(3, params)
    with pytest.raises(F.ConfigError, match="selects no leaf"):
        _prunable_paths([], params)


def test_a_state_saved_by_0_1_0_is_refused_clearly_and_migrates_to_the_same_run():
    """0.1.0's PruneState had no ``method`` and a 5-entry ``last_skip``: update says how to
    upgrade, and ``migrate_state`` continues the run exactly."""
    params, (x, y) = init_params(), batch()
    tx = fj.wrap(optax.sgd(0.1), F.FGGP(0.5), SCHEDULE)
    step = train_step(tx)
    state = tx.init(params)
    for _ in range(7):
        params, state = step(params, state, x, y)
    old = jax.tree.map(
        lambda s: s._replace(last_skip=jnp.zeros(5, jnp.int32), method=None),
        state, is_leaf=lambda s: isinstance(s, fj.PruneState),
    )
    with pytest.raises(F.ConfigError, match="migrate_state"):
        step(params, old, x, y)
    p_new, s_new = params, fj.migrate_state(old, F.FGGP(0.5))
    p_ref, s_ref = params, state
    for _ in range(9):
        p_new, s_new = step(p_new, s_new, x, y)
        p_ref, s_ref = step(p_ref, s_ref, x, y)
    assert_same_masks(kernels(fj.masks(s_new)), {n: np.asarray(m) for n, m in kernels(fj.masks(s_ref)).items()})
