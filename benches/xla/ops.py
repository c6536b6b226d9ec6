"""The convolution and pooling shapes of `wgpu-cnn bench` in JAX (XLA on the CPU), for the
benchmark table's XLA column: run it right after `make bench` on the same machine.

    python benches/xla/ops.py [--reps 7]

For each convolution: the forward pass (conv + bias) and the backward pass (dA_prev, dW and db
from dZ, as `conv_backward` computes them), each jitted; for each max pool: forward and backward
(XLA's select-and-scatter); a training step of each model of `wgpu-cnn train` at batch 64 on
64x64x3 images, 6 classes (forward, loss, backward, Adam, jitted as one function: `signs`, and
seed 002's three-layer convnet with its defaults), as `wgpu-cnn bench`'s `train_step` records.
Prints the median wall time of `reps` runs after a compiling run, with the result blocked on.
fp32 throughout. Needs `jax` (pip install jax).
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import signs  # seed 001's network and the Adam step, benches/xla/signs.py

# name, input (NHWC), weights (HWIO), strides, padding ((top, bottom), (left, right))
CONVS = [
    ("cifar", (64, 32, 32, 16), (3, 3, 16, 32), (1, 1), ((1, 1), (1, 1))),
    ("deep", (16, 16, 16, 128), (3, 3, 128, 128), (1, 1), ((1, 1), (1, 1))),
    ("stem", (16, 64, 64, 3), (4, 4, 3, 8), (1, 1), ((2, 2), (2, 2))),
    ("down", (64, 32, 32, 32), (3, 3, 32, 64), (2, 2), ((1, 1), (1, 1))),
    ("signs1", (64, 64, 64, 3), (4, 4, 3, 8), (1, 1), ((1, 2), (1, 2))),  # SAME, as TensorFlow pads
    ("signs2", (64, 8, 8, 8), (2, 2, 8, 16), (1, 1), ((0, 1), (0, 1))),
]
# name, input (NHWC), window = stride
POOLS = [
    ("pool", (64, 32, 32, 32), 2),
    ("signs1", (64, 64, 64, 8), 8),
    ("signs2", (64, 8, 8, 16), 4),
]


def conv(x, w, b, strides, padding):
    z = lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return z + b


def max_pool(x, f):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, f, f, 1), (1, f, f, 1), "VALID")


def three_layer_loss(p, x, y):
    """Seed 002's convnet: conv 7x7 (padding 3) + bias, ReLU, 2x2 max pool, affine, ReLU, affine;
    mean softmax cross-entropy."""
    a = max_pool(jax.nn.relu(conv(x, p["W1"], p["b1"], (1, 1), ((3, 3), (3, 3)))), 2)
    h = jax.nn.relu(a.reshape(a.shape[0], -1) @ p["W2"] + p["b2"])
    logp = jax.nn.log_softmax(h @ p["W3"] + p["b3"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def train_steps(rng):
    """(name, jitted step, its arguments) for each model at batch 64 of 64x64x3, 6 classes."""
    x = jnp.asarray(rng.random((64, 64, 64, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 6, 64), jnp.int32)
    normal = lambda *shape: jnp.asarray(1e-3 * rng.standard_normal(shape), jnp.float32)
    three = {"W1": normal(7, 7, 3, 32), "b1": jnp.zeros(32), "W2": normal(32 * 32 * 32, 100),
             "b2": jnp.zeros(100), "W3": normal(100, 6), "b3": jnp.zeros(6)}
    out = []
    for name, p, step in [
        ("signs", signs.init(jax.random.PRNGKey(1), 3, 64, 6), signs.step),
        ("three_layer", three, signs.make_step(three_layer_loss, 1e-3)),
    ]:
        zeros = jax.tree.map(jnp.zeros_like, p)
        out.append((name, step, (p, zeros, zeros, jnp.float32(0), x, y)))
    return out


def median_ms(fn, args, reps):
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; median of {a.reps} runs, ms")
    print(f"{'op/shape':<28}{'forward':>10}{'backward':>10}")
    for name, xs, ws, st, pad in CONVS:
        x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
        w = jnp.asarray(rng.standard_normal(ws), jnp.float32)
        b = jnp.asarray(rng.standard_normal(ws[3]), jnp.float32)
        fwd = jax.jit(lambda x, w, b: conv(x, w, b, st, pad))
        z, vjp = jax.vjp(lambda x, w, b: conv(x, w, b, st, pad), x, w, b)
        dz = jnp.asarray(rng.standard_normal(z.shape), jnp.float32)
        bwd = jax.jit(lambda x, w, b, dz: jax.vjp(lambda x, w, b: conv(x, w, b, st, pad), x, w, b)[1](dz))
        print(f"{'conv/' + name:<28}{median_ms(fwd, (x, w, b), a.reps):>10.2f}"
              f"{median_ms(bwd, (x, w, b, dz), a.reps):>10.2f}")
    for name, xs, f in POOLS:
        x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
        fwd = jax.jit(lambda x: max_pool(x, f))
        y = fwd(x)
        dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
        bwd = jax.jit(lambda x, dy: jax.vjp(lambda x: max_pool(x, f), x)[1](dy)[0])
        print(f"{'max_pool/' + name:<28}{median_ms(fwd, (x,), a.reps):>10.2f}"
              f"{median_ms(bwd, (x, dy), a.reps):>10.2f}")
    for name, step, args in train_steps(rng):
        print(f"{'train_step/' + name:<28}{median_ms(step, args, a.reps):>10.2f}")


if __name__ == "__main__":
    main()
