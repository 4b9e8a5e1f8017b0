"""optimization.py against numpy (float64) formulas, Google's original optimizer and tf.distribute."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import optimization

B1, B2, EPS = 0.9, 0.999, 1e-6


# ---------------------------------------------------------------- numpy reference (float64)
def np_rate(step: int, init_lr: float, num_train_steps: int, num_warmup_steps: int) -> float:
    """Google's schedule, written independently: linear decay from step 0, linear warmup."""
    rate = init_lr * (1.0 - min(step, num_train_steps) / num_train_steps)
    if num_warmup_steps and step < num_warmup_steps:
        rate = init_lr * step / num_warmup_steps
    return rate


def np_step(param, m, v, grad, lr, wd, decay):
    """One AdamWeightDecay update without bias correction; returns new (param, m, v)."""
    m = B1 * m + (1 - B1) * grad
    v = B2 * v + (1 - B2) * grad**2
    update = m / (np.sqrt(v) + EPS)
    if decay:
        update = update + wd * param
    return param - lr * update, m, v


# Google names paired with deliberately misleading TF2 names: the decay decision must come from
# the checkpoint names handed to the optimizer, not from `var.name`.
VARIABLE_SPECS = [
    # (checkpoint name, TF2 variable name, shape, decayed under the default exclusions)
    ("bert/encoder/layer_0/attention/output/dense/kernel", "x/LayerNorm/bias", (4, 3), True),
    ("bert/encoder/layer_0/attention/output/LayerNorm/gamma", "plain_a", (3,), False),
    ("bert/encoder/layer_0/output/layer_norm_like/beta", "plain_b", (3,), False),
    ("output_weights", "output_bias", (2, 3), True),
    ("output_bias", "output_weights", (2,), False),
]


def make_variables(seed=0):
    rng = np.random.default_rng(seed)
    name_to_var, initial = {}, {}
    for name, tf_name, shape, _ in VARIABLE_SPECS:
        value = rng.normal(size=shape).astype(np.float32)
        initial[name] = value.astype(np.float64)
        name_to_var[name] = tf.Variable(value, name=tf_name)
    return name_to_var, initial


def test_schedule_matches_formula_and_boundaries():
    for init_lr, n, w in [(5e-5, 10, 3), (0.2, 7, 0), (1.0, 5, 5), (2e-5, 343, 34)]:
        sched = optimization.WarmupPolynomialDecay(init_lr, n, w)
        for step in list(range(0, n + 4)):
            expected = np_rate(step, init_lr, n, w)
            for s in (step, float(step), tf.constant(step, tf.int64)):
                got = float(sched(s))
                assert got == pytest.approx(expected, rel=1e-6, abs=1e-12), (init_lr, n, w, s)
    sched = optimization.WarmupPolynomialDecay(1.0, 10, 4)
    assert float(sched(0)) == 0.0  # first update of a warmup run has rate 0
    assert float(sched(3)) == pytest.approx(0.75)  # last warmup step
    assert float(sched(4)) == pytest.approx(0.6)  # decay measured from step 0, not from warmup end
    assert float(sched(10)) == 0.0 and float(sched(25)) == 0.0  # no cycling past num_train_steps
    # MRPC from the README: 343 steps, 34 warmup.
    sched = optimization.WarmupPolynomialDecay(2e-5, 343, 34)
    assert float(sched(34)) == pytest.approx(2e-5 * (1 - 34 / 343), rel=1e-6)


def test_schedule_serialises():
    sched = optimization.WarmupPolynomialDecay(3e-5, 100, 10)
    restored = tf_keras.optimizers.schedules.deserialize(
        tf_keras.optimizers.schedules.serialize(sched)
    )
    assert isinstance(restored, optimization.WarmupPolynomialDecay)
    assert restored.get_config() == sched.get_config()
    for step in (0, 5, 10, 50, 100, 150):
        assert float(restored(step)) == float(sched(step))
    with pytest.raises(ValueError, match="num_train_steps"):
        optimization.WarmupPolynomialDecay(1.0, -1, 0)


@pytest.mark.parametrize("exclude", [None, []], ids=["default_exclusions", "no_exclusions"])
def test_steps_match_numpy(exclude):
    """12 steps through warmup, decay, the boundary steps and past num_train_steps."""
    init_lr, n, w, wd = 0.05, 8, 3, 0.01
    name_to_var, params = make_variables()
    opt = optimization.create_optimizer(init_lr, n, w, name_to_variable=name_to_var)
    if exclude is not None:
        opt.exclude_from_weight_decay = exclude
    names = [spec[0] for spec in VARIABLE_SPECS]
    decayed = {spec[0]: (spec[3] if exclude is None else True) for spec in VARIABLE_SPECS}
    for name in names:
        assert opt.use_weight_decay(opt.checkpoint_name(name_to_var[name])) == decayed[name]
    ms = {k: np.zeros_like(p) for k, p in params.items()}
    vs = {k: np.zeros_like(p) for k, p in params.items()}
    rng = np.random.default_rng(1)

    @tf.function
    def step_fn(gs):
        opt.apply_gradients(zip(gs, [name_to_var[k] for k in names]))

    max_diff = 0.0
    for k in range(12):
        grads = {name: rng.normal(size=params[name].shape) * 3 for name in names}
        step_fn([tf.constant(grads[name], tf.float32) for name in names])
        lr = np_rate(k, init_lr, n, w)
        for name in names:
            # numpy consumes the same float32 gradient values the optimizer saw.
            g = grads[name].astype(np.float32).astype(np.float64)
            params[name], ms[name], vs[name] = np_step(
                params[name], ms[name], vs[name], g, lr, wd, decayed[name]
            )
        slots = opt.slot_variables_by_checkpoint_name()
        for name in names:
            got = name_to_var[name].numpy()
            np.testing.assert_allclose(got, params[name], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(slots[name + "/adam_m"].numpy(), ms[name], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(slots[name + "/adam_v"].numpy(), vs[name], rtol=1e-5, atol=1e-8)
            max_diff = max(max_diff, float(np.max(np.abs(got - params[name]))))
        assert int(opt.iterations.numpy()) == k + 1
    print(f"max |tf - numpy| over 12 steps ({exclude=}): {max_diff:.3e}")
    # Sanity check that the parameters really moved in the decay phase.
    assert not np.allclose(params[names[0]], make_variables()[1][names[0]])


def np_step_corrected(param, m, v, grad, lr, wd, decay, t):
    """One update of standard Adam with bias correction at step t (1-based), decoupled decay."""
    m = B1 * m + (1 - B1) * grad
    v = B2 * v + (1 - B2) * grad**2
    update = (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS)
    if decay:
        update = update + wd * param
    return param - lr * update, m, v


@pytest.mark.parametrize("bias_correction", [False, True], ids=["default", "bias_corrected"])
def test_bias_correction_steps_match_numpy(bias_correction):
    """--adam_bias_correction: every step equals the bias-corrected formula; off (the default)
    every step equals the original's uncorrected one, and the two differ."""
    init_lr, n, w, wd = 0.05, 8, 0, 0.01
    name_to_var, params = make_variables()
    if bias_correction:
        opt = optimization.create_optimizer(init_lr, n, w, name_to_variable=name_to_var,
                                            bias_correction=True)
    else:
        opt = optimization.create_optimizer(init_lr, n, w, name_to_variable=name_to_var)
    assert opt.bias_correction is bias_correction
    assert opt.get_config()["bias_correction"] is bias_correction
    names = [spec[0] for spec in VARIABLE_SPECS]
    decayed = {spec[0]: spec[3] for spec in VARIABLE_SPECS}
    ms = {k: np.zeros_like(p) for k, p in params.items()}
    vs = {k: np.zeros_like(p) for k, p in params.items()}
    other = {k: p.copy() for k, p in params.items()}  # the other algorithm on the same step
    rng = np.random.default_rng(2)

    @tf.function
    def step_fn(gs):
        opt.apply_gradients(zip(gs, [name_to_var[k] for k in names]))

    for k in range(6):
        grads = {name: rng.normal(size=params[name].shape) for name in names}
        step_fn([tf.constant(grads[name], tf.float32) for name in names])
        lr = np_rate(k, init_lr, n, w)
        for name in names:
            g = grads[name].astype(np.float32).astype(np.float64)
            corrected = np_step_corrected(params[name], ms[name], vs[name], g, lr, wd,
                                          decayed[name], k + 1)
            plain = np_step(params[name], ms[name], vs[name], g, lr, wd, decayed[name])
            params[name], ms[name], vs[name] = corrected if bias_correction else plain
            other[name] = (plain if bias_correction else corrected)[0]
            np.testing.assert_allclose(name_to_var[name].numpy(), params[name],
                                       rtol=1e-5, atol=1e-6)
            # The moments stored are the uncorrected ones either way (checkpoints unchanged).
            np.testing.assert_allclose(opt.get_slot(name_to_var[name], "adam_m").numpy(),
                                       ms[name], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(opt.get_slot(name_to_var[name], "adam_v").numpy(),
                                       vs[name], rtol=1e-5, atol=1e-8)
    # At step 1 the corrected update is m/(1-B1) / sqrt(v/(1-B2)) = g/|g|, the uncorrected one
    # 0.1 g / sqrt(0.001 g^2) = 3.16 g/|g|: the two algorithms really differ.
    assert np.max(np.abs(other[names[0]] - params[names[0]])) > 1e-3


def test_first_warmup_update_has_rate_zero():
    var = tf.Variable([1.0, -2.0])
    opt = optimization.create_optimizer(0.1, 10, 2, name_to_variable={"w": var})
    opt.apply_gradients([(tf.constant([0.5, 0.5]), var)])
    np.testing.assert_array_equal(var.numpy(), [1.0, -2.0])  # rate 0 at step 0, weight decay too
    np.testing.assert_allclose(opt.get_slot(var, "adam_m").numpy(), [0.05, 0.05], rtol=1e-6)
    opt.apply_gradients([(tf.constant([0.5, 0.5]), var)])
    assert not np.allclose(var.numpy(), [1.0, -2.0])  # step 1 uses rate 0.05
    assert opt.global_step is opt.iterations and opt.iterations.dtype == tf.int64


def test_indexed_slices_apply_dense_semantics():
    """Gathered gradients (IndexedSlices, duplicate rows) act as their dense sum; untouched
    rows' moments still decay, as in the original."""
    table = tf.Variable(np.arange(18, dtype=np.float32).reshape(6, 3) / 10.0, name="t")
    name = "bert/embeddings/word_embeddings"
    opt = optimization.create_optimizer(0.1, 10, 0, name_to_variable={name: table})
    param = table.numpy().astype(np.float64)
    m, v = np.zeros_like(param), np.zeros_like(param)
    # Step 0: dense gradient on every row, so every row has non-zero moments.
    g0 = np.ones((6, 3), np.float32)
    opt.apply_gradients([(tf.constant(g0), table)])
    param, m, v = np_step(param, m, v, g0, np_rate(0, 0.1, 10, 0), 0.01, True)
    for k, ids in [(1, [1, 3, 1]), (2, [4]), (3, [0, 0, 0, 5])]:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(table, ids) * tf.constant([1.0, -2.0, 3.0]))
        grad = tape.gradient(loss, table)
        assert isinstance(grad, tf.IndexedSlices)
        opt.apply_gradients([(grad, table)])
        dense = np.zeros((6, 3))
        np.add.at(dense, ids, np.array([1.0, -2.0, 3.0]))
        m_before = m.copy()
        param, m, v = np_step(param, m, v, dense, np_rate(k, 0.1, 10, 0), 0.01, True)
        untouched = [r for r in range(6) if r not in ids]
        np.testing.assert_allclose(m[untouched], B1 * m_before[untouched])
        slots = opt.slot_variables_by_checkpoint_name()
        np.testing.assert_allclose(table.numpy(), param, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(slots[name + "/adam_m"].numpy(), m, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(slots[name + "/adam_v"].numpy(), v, rtol=1e-5, atol=1e-8)


def test_original_optimization_test_converges():
    """Google's optimization_test.test_adam, rewritten: lr 0.2, no decay, 100 steps."""
    w = tf.Variable([0.1, -0.2, -0.1], name="w")
    x = tf.constant([0.4, 0.2, -0.5])
    opt = optimization.AdamWeightDecay(learning_rate=0.2)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(x - w))
        opt.apply_gradients([(tape.gradient(loss, w), w)])

    for _ in range(100):
        train_step()
    np.testing.assert_allclose(w.numpy(), [0.4, 0.2, -0.5], rtol=1e-2, atol=1e-2)
    assert int(opt.iterations.numpy()) == 100


def test_matches_google_original_optimizer():
    """Same gradients and rates into bert-tensorflow's AdamWeightDecayOptimizer (TF1 graph)."""
    from bert import optimization as google_optimization  # oracle only, never in project code

    init_lr, n, w, steps = 0.05, 6, 2, 8
    rng = np.random.default_rng(7)
    _, initial = make_variables(seed=3)
    names = [spec[0] for spec in VARIABLE_SPECS]
    grads = [{k: rng.normal(size=initial[k].shape).astype(np.float32) for k in names} for _ in range(steps)]

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        gvars = [tf1.get_variable(k, initializer=initial[k].astype(np.float32)) for k in names]
        lr_ph = tf1.placeholder(tf.float32, [])
        grad_phs = [tf1.placeholder(tf.float32, initial[k].shape) for k in names]
        google_opt = google_optimization.AdamWeightDecayOptimizer(
            learning_rate=lr_ph, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
            exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"],
        )
        train_op = google_opt.apply_gradients(zip(grad_phs, gvars))
        slot_vars = {v.op.name: v for v in tf1.global_variables() if "/adam_" in v.op.name}
        slot_names = sorted(slot_vars)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for k in range(steps):
                feed = {lr_ph: np_rate(k, init_lr, n, w)}
                feed.update({ph: grads[k][name] for ph, name in zip(grad_phs, names)})
                sess.run(train_op, feed)
            google_params = dict(zip(names, sess.run(gvars)))
            google_slots = dict(zip(slot_names, sess.run([slot_vars[s] for s in slot_names])))

    name_to_var = {k: tf.Variable(initial[k].astype(np.float32), name=f"v{i}") for i, k in enumerate(names)}
    opt = optimization.create_optimizer(init_lr, n, w, name_to_variable=name_to_var)
    opt.build()
    ours_slots = opt.slot_variables_by_checkpoint_name()
    assert sorted(ours_slots) == slot_names  # same "<name>/adam_m" / "<name>/adam_v" names
    for k in range(steps):
        opt.apply_gradients((tf.constant(grads[k][name]), name_to_var[name]) for name in names)
    max_diff = 0.0
    for name in names:
        diff = np.max(np.abs(name_to_var[name].numpy() - google_params[name]))
        max_diff = max(max_diff, float(diff))
        np.testing.assert_allclose(name_to_var[name].numpy(), google_params[name], rtol=1e-6, atol=1e-6)
    for slot_name, value in google_slots.items():
        np.testing.assert_allclose(ours_slots[slot_name].numpy(), value, rtol=1e-6, atol=1e-7)
    print(f"max |ours - google original| after {steps} steps: {max_diff:.3e}")


def test_build_slots_and_names():
    name_to_var, _ = make_variables()
    opt = optimization.create_optimizer(1e-3, 10, 1, name_to_variable=name_to_var)
    with pytest.raises(ValueError, match="build"):
        opt.slot_variables_by_checkpoint_name()
    opt.build()
    slots = opt.slot_variables_by_checkpoint_name()
    expected = sorted(f"{k}/{s}" for k in name_to_var for s in ("adam_m", "adam_v"))
    assert sorted(slots) == expected
    for key, slot in slots.items():
        owner = name_to_var[key.rsplit("/", 1)[0]]
        assert slot.shape == owner.shape and not slot.trainable
        assert np.all(slot.numpy() == 0)
    assert int(opt.iterations.numpy()) == 0
    assert opt.learning_rate_schedule.get_config()["num_train_steps"] == 10
    assert float(opt.learning_rate_schedule(1)) == pytest.approx(1e-3 * 0.9)
    assert float(optimization.AdamWeightDecay(0.25).learning_rate_schedule(7)) == 0.25
    # create_slots is build under another name: nothing new is created.
    count = len(opt.variables())
    opt.create_slots(list(name_to_var.values()))
    assert len(opt.variables()) == count == 1 + 2 * len(name_to_var)
    # Slot values can be assigned (restored) before the first step and are then used.
    slots["output_bias/adam_m"].assign([1.0, 1.0])
    opt.apply_gradients([(tf.zeros([2]), name_to_var["output_bias"])])
    np.testing.assert_allclose(slots["output_bias/adam_m"].numpy(), [0.9, 0.9], rtol=1e-6)
    config = opt.get_config()
    assert config["weight_decay_rate"] == 0.01 and config["epsilon"] == 1e-6
    assert config["exclude_from_weight_decay"] == ["LayerNorm", "layer_norm", "bias"]
    clone = optimization.AdamWeightDecay.from_config(config)
    assert float(clone._decayed_lr(tf.float32)) == pytest.approx(0.0)  # warmup step 0


def test_clip_gradients_and_apply_helper():
    rng = np.random.default_rng(5)
    grads_np = [rng.normal(size=(3, 2)) * 4, rng.normal(size=(5,)) * 4]
    norm = np.sqrt(sum(np.sum(g.astype(np.float32).astype(np.float64) ** 2) for g in grads_np))
    assert norm > 1.0
    clipped = optimization.clip_gradients([tf.constant(g, tf.float32) for g in grads_np] + [None], 1.0)
    assert clipped[2] is None
    for got, g in zip(clipped, grads_np):
        np.testing.assert_allclose(got.numpy(), g / norm, rtol=1e-5)
    # all_reduce_clip_and_apply without a strategy == clip then apply.
    a = [tf.Variable(np.zeros((3, 2), np.float32)), tf.Variable(np.zeros(5, np.float32))]
    b = [tf.Variable(np.zeros((3, 2), np.float32)), tf.Variable(np.zeros(5, np.float32))]
    opt_a = optimization.create_optimizer(0.1, 5, 0, name_to_variable={"k": a[0], "b/bias": a[1]})
    opt_b = optimization.create_optimizer(0.1, 5, 0, name_to_variable={"k": b[0], "b/bias": b[1]})
    grads = [tf.constant(g, tf.float32) for g in grads_np]
    optimization.all_reduce_clip_and_apply(opt_a, grads, a)
    opt_b.apply_gradients(zip(optimization.clip_gradients(grads), b), experimental_aggregate_gradients=False)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
        assert np.any(x.numpy() != 0)


DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    # Two logical CPUs; must happen before any op runs.
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import optimization

    rng = np.random.default_rng(0)
    INIT = {
        "bert/embeddings/word_embeddings": rng.normal(size=(7, 4)).astype(np.float32),
        "bert/pooler/dense/kernel": rng.normal(size=(4, 3)).astype(np.float32),
        "bert/pooler/dense/bias": rng.normal(size=(3,)).astype(np.float32),
        "bert/embeddings/LayerNorm/gamma": rng.normal(size=(3,)).astype(np.float32),
    }
    GLOBAL_BATCH, STEPS = 8, 8
    DATA = [(rng.integers(0, 5, size=(GLOBAL_BATCH, 3)).astype(np.int32),
             (rng.normal(size=(GLOBAL_BATCH, 3)) * 5).astype(np.float32)) for _ in range(STEPS)]

    def run(strategy, num_replicas):
        with strategy.scope():
            name_to_var = {k: tf.Variable(v, name="v%d" % i) for i, (k, v) in enumerate(INIT.items())}
            opt = optimization.create_optimizer(0.05, 6, 2, name_to_variable=name_to_var)
            opt.build()
        names = list(INIT)
        variables = [name_to_var[k] for k in names]
        # Each replica's component must find its checkpoint name (the decay rule depends on it).
        names_ok = all(opt.checkpoint_name(c) == k for k, var in name_to_var.items()
                       for c in getattr(var, "values", [var]))
        sparse_seen = []

        def replica_fn(ids, targets):
            with tf.GradientTape() as tape:
                emb, kernel, bias, gamma = variables
                hidden = tf.reduce_mean(tf.gather(emb, ids), axis=1)
                out = gamma * (tf.matmul(hidden, kernel) + bias)
                per_example = tf.reduce_sum(tf.square(out - targets), axis=-1)
                loss = tf.reduce_sum(per_example) / GLOBAL_BATCH
            grads = tape.gradient(loss, variables)
            sparse_seen.append(isinstance(grads[0], tf.IndexedSlices))
            optimization.all_reduce_clip_and_apply(opt, grads, variables)

        @tf.function
        def step(ids, targets):
            strategy.run(replica_fn, args=(ids, targets))

        per = GLOBAL_BATCH // num_replicas
        for ids, targets in DATA:
            def shard(x):
                return strategy.experimental_distribute_values_from_function(
                    lambda ctx: x[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per])
            step(shard(ids), shard(targets))
        slots = opt.slot_variables_by_checkpoint_name()
        out = {k: name_to_var[k].numpy() for k in names}
        out.update({k: v.numpy() for k, v in slots.items()})
        # Every replica's copy must be identical.
        spread = 0.0
        for var in list(variables) + list(slots.values()):
            comps = [np.asarray(c.numpy()) for c in getattr(var, "values", [var])]
            spread = max(spread, max(float(np.max(np.abs(c - comps[0]))) for c in comps))
        return (out, int(opt.iterations.numpy()), strategy.num_replicas_in_sync, any(sparse_seen), spread,
                names_ok)

    single, it1, n1, sparse1, _, ok1 = run(tf.distribute.OneDeviceStrategy("/cpu:0"), 1)
    multi, it2, n2, sparse2, spread, ok2 = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), 2)
    diff = max(float(np.max(np.abs(single[k] - multi[k]))) for k in single)
    moved = float(np.max(np.abs(single["bert/pooler/dense/kernel"] - INIT["bert/pooler/dense/kernel"])))
    print(json.dumps({"max_abs_diff": diff, "iterations": [it1, it2], "replicas": [n1, n2],
                      "sparse_grads": [sparse1, sparse2], "replica_spread": spread,
                      "keys": sorted(single), "moved": moved, "names_ok": [ok1, ok2]}))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_equals_single_device(tmp_path, repo_root):
    script = tmp_path / "distributed_check.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, str(script), repo_root], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("distributed check:", result)
    assert result["replicas"] == [1, 2]
    assert result["iterations"] == [8, 8]
    assert result["sparse_grads"] == [True, True]  # the embedding gather went through the dense path
    assert result["replica_spread"] == 0.0
    assert result["names_ok"] == [True, True]
    assert result["moved"] > 1e-3
    assert len(result["keys"]) == 12
    assert result["max_abs_diff"] < 1e-6


def _ancestors(op):
    """Every op `op` depends on, through data and control edges."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


@pytest.mark.parametrize("sparse", [False, True])
def test_update_reads_state_only_after_the_gradient(sparse):
    # Memory, not values: a read of m, v or the parameter that does not wait for the gradient
    # lets the executor run `beta_1 * m` etc. at the start of the training step and keep those
    # parameter-sized tensors alive through the forward and backward pass.
    var = tf.Variable(tf.ones([4, 3]), name="w")
    opt = optimization.AdamWeightDecay(0.1, weight_decay_rate=0.01,
                                       name_to_variable={"layer/kernel": var})
    opt.build([var])

    @tf.function
    def step(x):
        grad = tf.square(x, name="the_gradient")
        if sparse:
            grad = tf.IndexedSlices(grad[:2], tf.constant([0, 2]), tf.constant([4, 3]))
        opt.apply_gradients([(grad, var)])

    graph = step.get_concrete_function(tf.TensorSpec([4, 3])).graph
    gradient_op = graph.get_operation_by_name("the_gradient")
    reads = [op for op in graph.get_operations()
             if op.type == "ReadVariableOp" and op.outputs[0].shape == [4, 3]]
    # m, v and the parameter (for the decay), each read once, after the gradient.
    early = sorted(op.name for op in reads if gradient_op not in _ancestors(op))
    assert len(reads) >= 3 and not early, early
    arithmetic = [op for op in graph.get_operations()
                  if op.type in ("Mul", "AddV2", "RealDiv", "Sqrt", "Square")
                  and op.outputs[0].shape == [4, 3] and op is not gradient_op]
    assert len(arithmetic) >= 8
    assert all(gradient_op in _ancestors(op) for op in arithmetic)
