"""The expected losses of `tests/model.rs`'s `signs_trains_like_tensorflow_and_jax_where_pool_windows_tie`:
seed 001's network in JAX (float64) on four 16x16x3 images whose pixels saturate, so that every
max-pool window has exact ties; wgpu-cnn's seed-1 initial weights; four Adam steps (lr 0.009).
JAX's max-pool gradient, like TensorFlow's, goes to one maximum per window.

    python benches/xla/tie_case.py
"""
import jax
import jax.numpy as jnp
import numpy as np

import signs

jax.config.update("jax_enable_x64", True)


def main():
    m, h, w, c = 4, 16, 16, 3
    x = np.zeros((m, h, w, c))
    for i in range(m):
        for a in range(h):
            for b in range(w):
                for k in range(c):
                    x[i, a, b, k] = min(1.0, ((a * 7 + b * 3 + k * 5 + i * 2) % 13) / 6.0)
    y = jnp.asarray([0, 1, 1, 0])
    p = {name: v.astype(jnp.float64) for name, v in signs.wgpu_cnn_init(1, c, 16, 2).items()}
    mom = jax.tree.map(jnp.zeros_like, p)
    vel = jax.tree.map(jnp.zeros_like, p)
    t = 0.0
    step = jax.jit(signs.step.__wrapped__)
    for _ in range(4):
        p, mom, vel, t, value = step(p, mom, vel, t, jnp.asarray(x), y)
        print(f"{float(value):.10f}")


if __name__ == "__main__":
    main()
