"""Seed 001's `signs` network trained with JAX (XLA on the CPU): the anchor that
`wgpu-cnn train --model signs` is timed against, on the same machine, one after the other.

    python benches/xla/signs.py --data train.h5 --test test.h5 --seed 1 [--epochs 100]

The same network and hyper-parameters as wgpu-cnn's: conv 4x4x3->8 SAME (no bias), ReLU, max
pool 8x8/8 SAME, conv 2x2x8->16 SAME (no bias), ReLU, max pool 4x4/4 SAME, flatten, fully
connected -> classes; mean softmax cross-entropy; Adam (lr 0.009, betas 0.9/0.999, eps 1e-8);
minibatches of 64 shuffled each epoch (the last one smaller); Glorot uniform weights. The step
is jitted; one jitted function per minibatch shape. Prints the cost every 5 epochs, the
accuracies, and the wall time of the 100 epochs with and without the first (compiling) epoch.
Needs `jax` and `h5py` (pip install jax h5py).

`--same-start` takes wgpu-cnn's own initial weights and shuffles for the seed (its SplitMix64
generator, replicated below) instead of JAX's, so that the two trainings start from the same
point and see the same minibatches: their first steps then agree to float rounding.
"""
import argparse
import time

import h5py
import jax
import jax.numpy as jnp
import numpy as np


def load(path):
    with h5py.File(path, "r") as f:
        prefix = "train_set" if "train_set_x" in f else "test_set"
        x = np.asarray(f[prefix + "_x"], dtype=np.float32) / 255.0
        y = np.asarray(f[prefix + "_y"]).reshape(-1).astype(np.int32)
        k = len(f["list_classes"])
    return x, y, k


def glorot(key, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


def init(key, c, d, k):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "W1": glorot(k1, (4, 4, c, 8), 16 * c, 16 * 8),
        "W2": glorot(k2, (2, 2, 8, 16), 4 * 8, 4 * 16),
        "W3": glorot(k3, (d, k), d, k),
        "b3": jnp.zeros((k,), jnp.float32),
    }


MASK64 = (1 << 64) - 1


class WgpuCnnRng:
    """wgpu-cnn's `Rng` (SplitMix64 over a seed mixed with a constant)."""

    def __init__(self, seed):
        self.state = (seed ^ 0x5DEECE66D1CE4E5B) & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next_u64() >> 11) / float(1 << 53)

    def below(self, n):
        return int(self.uniform() * n) % max(n, 1)


def wgpu_cnn_init(seed, c, d, k):
    """`Sequential::signs(..).init(seed)`: Glorot uniform, parameters in order, row-major."""
    rng = WgpuCnnRng(seed)
    p = {}
    for name, shape, fans in [("W1", (4, 4, c, 8), (16 * c, 16 * 8)),
                              ("W2", (2, 2, 8, 16), (4 * 8, 4 * 16)),
                              ("W3", (d, k), (d, k))]:
        limit = np.sqrt(6.0 / sum(fans))
        count = int(np.prod(shape))
        values = [np.float32((2.0 * rng.uniform() - 1.0) * limit) for _ in range(count)]
        p[name] = jnp.asarray(np.array(values, np.float32).reshape(shape))
    p["b3"] = jnp.zeros((k,), jnp.float32)
    return p


def wgpu_cnn_order(n, seed, epoch):
    """`nn::shuffled(n, seed, epoch)`: a Fisher-Yates shuffle."""
    rng = WgpuCnnRng(((seed * 0x2545F4914F6CDD1D) & MASK64) ^ epoch)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return np.array(order)


def conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def max_pool(x, f):
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, f, f, 1), (1, f, f, 1), "SAME")


def scores(p, x):
    a = max_pool(jax.nn.relu(conv(x, p["W1"])), 8)
    a = max_pool(jax.nn.relu(conv(a, p["W2"])), 4)
    return a.reshape(a.shape[0], -1) @ p["W3"] + p["b3"]


def loss(p, x, y):
    logp = jax.nn.log_softmax(scores(p, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def make_step(loss, lr, b1=0.9, b2=0.999, eps=1e-8):
    """A jitted training step of `loss(params, x, y)` with Adam (cs231n's update)."""
    @jax.jit
    def step(p, m, v, t, x, y):
        value, g = jax.value_and_grad(loss)(p, x, y)
        t = t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = jax.tree.map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
        return p, m, v, t, value
    return step


step = make_step(loss, 0.009)


predict = jax.jit(lambda p, x: jnp.argmax(scores(p, x), axis=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--same-start", action="store_true",
                    help="wgpu-cnn's initial weights and shuffles for this seed")
    a = ap.parse_args()
    x, y, k = load(a.data)
    xt, yt, _ = load(a.test)
    n, h, w, c = x.shape
    d = -(-(-(-h // 8)) // 4) * -(-(-(-w // 8)) // 4) * 16
    if a.same_start:
        p = wgpu_cnn_init(a.seed, c, d, k)
    else:
        p = init(jax.random.PRNGKey(a.seed), c, d, k)
    m = jax.tree.map(jnp.zeros_like, p)
    v = jax.tree.map(jnp.zeros_like, p)
    t = jnp.float32(0)
    rng = np.random.default_rng(a.seed)
    start = time.perf_counter()
    after_first = None
    for epoch in range(a.epochs):
        order = wgpu_cnn_order(n, a.seed, epoch) if a.same_start else rng.permutation(n)
        losses = []
        for s in range(0, n, a.batch):
            idx = order[s:s + a.batch]
            p, m, v, t, value = step(p, m, v, t, x[idx], y[idx])
            losses.append(value)
        cost = float(np.mean([float(l) for l in losses]))
        if epoch == 0:
            after_first = time.perf_counter()
        if epoch % 5 == 0:
            print(f"Cost after epoch {epoch}: {cost:.6f}")
    end = time.perf_counter()
    train_acc = float(np.mean(np.asarray(predict(p, x)) == y))
    test_acc = float(np.mean(np.asarray(predict(p, xt)) == yt))
    print(f"Train Accuracy: {train_acc:.4f}")
    print(f"Test Accuracy: {test_acc:.4f}")
    print(f"training: {end - start:.1f} s for {a.epochs} epochs "
          f"({end - after_first:.1f} s after the first, compiling, epoch); jax {jax.__version__}, "
          f"{jax.devices()[0].platform}")


if __name__ == "__main__":
    main()
