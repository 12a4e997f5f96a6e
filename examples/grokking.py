"""Grokking, live in steplake: a small numpy MLP learns modular addition.

The model memorises its training pairs within a few hundred steps (train
accuracy 100%) while test accuracy stays near chance; more than a thousand
steps later, weight decay pulls it onto the general algorithm and test
accuracy jumps. Every step streams to steplake as it happens (watch it in the
dashboard), and at the end one SQL query answers "at which step did test
accuracy emerge?".

    pip install steplake-*.whl                      # once (./scripts/build-wheel.sh builds it)
    python examples/grokking.py                     # 1-3 minutes on 2 cores

With no server running, steplake.init() starts a local one (see the README's
Quick start); with `steplake serve` running, or --server, it logs there.

Needs only numpy and the steplake package. Options: --server, --steps,
--modulus, --train-fraction, --seed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import steplake

EMERGENCE_SQL = """
SELECT name,
       first_sustained(step, value >= {threshold}, {hold}) AS emerged_at
FROM scalars
WHERE run_id = '{run_id}' AND name IN ('train/acc', 'test/acc')
GROUP BY name
ORDER BY name
"""


class ModularAdditionMLP:
    """(a, b) -> (a + b) mod p: one-hot inputs, one ReLU hidden layer, AdamW."""

    def __init__(self, p: int, hidden: int, rng: np.random.Generator) -> None:
        self.w1 = rng.standard_normal((2 * p, hidden)) / np.sqrt(2 * p)
        self.w2 = rng.standard_normal((hidden, p)) / np.sqrt(hidden)
        self.params = [self.w1, self.w2]
        self.m = [np.zeros_like(w) for w in self.params]
        self.v = [np.zeros_like(w) for w in self.params]
        self.t = 0

    def logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = x @ self.w1
        z = np.maximum(h, 0.0)
        return h, z, z @ self.w2

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float, weight_decay: float) -> tuple[float, float]:
        """One full-batch AdamW step; (loss, accuracy) before it."""
        h, z, logits = self.logits(x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        loss = float(-np.log(probs[rows, y] + 1e-12).mean())
        accuracy = float((logits.argmax(axis=1) == y).mean())
        grad = probs
        grad[rows, y] -= 1.0
        grad /= len(y)
        grad_w2 = z.T @ grad
        grad_w1 = x.T @ ((grad @ self.w2.T) * (h > 0))
        self.t += 1
        for i, (w, g) in enumerate(zip(self.params, (grad_w1, grad_w2))):
            self.m[i] = 0.9 * self.m[i] + 0.1 * g
            self.v[i] = 0.98 * self.v[i] + 0.02 * g * g
            m_hat = self.m[i] / (1 - 0.9**self.t)
            v_hat = self.v[i] / (1 - 0.98**self.t)
            w -= lr * (m_hat / (np.sqrt(v_hat) + 1e-8) + weight_decay * w)
        return loss, accuracy

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        _, _, logits = self.logits(x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-log_probs[np.arange(len(y)), y].mean())
        return loss, float((logits.argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description="Grokking modular addition, logged to steplake.")
    parser.add_argument("--server", default=None, help="steplake server (default STEPLAKE_SERVER, else 127.0.0.1:50051 when one listens "
                        "there, else a local server started on demand)")
    parser.add_argument("--steps", type=int, default=4000, help="at most this many steps")
    parser.add_argument("--modulus", type=int, default=59)
    parser.add_argument("--train-fraction", type=float, default=0.4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--weight-decay", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    p = args.modulus
    rng = np.random.default_rng(args.seed)
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    labels = (a + b) % p
    inputs = np.zeros((p * p, 2 * p))
    inputs[np.arange(p * p), a] = 1.0
    inputs[np.arange(p * p), p + b] = 1.0
    order = rng.permutation(p * p)
    n_train = int(args.train_fraction * p * p)
    train, test = order[:n_train], order[n_train:]
    model = ModularAdditionMLP(p, args.hidden, rng)

    config = {k: v for k, v in vars(args).items() if k != "server"}
    run = steplake.init(project="grokking", name=f"mod-{p}-add", config=config, server=args.server)
    print(f"run {run.id}: {n_train} training pairs, {len(test)} test pairs, logging to {run.server}")
    started = time.perf_counter()
    test_acc_streak = 0
    for step in range(args.steps):
        loss, accuracy = model.train_step(inputs[train], labels[train], args.lr, args.weight_decay)
        metrics = {"train/loss": loss, "train/acc": accuracy}
        if step % args.eval_every == 0:
            test_loss, test_acc = model.evaluate(inputs[test], labels[test])
            metrics.update({
                "test/loss": test_loss,
                "test/acc": test_acc,
                "weights/l2": float(np.sqrt(sum((w * w).sum() for w in model.params))),
            })
            test_acc_streak = test_acc_streak + 1 if test_acc >= 0.98 else 0
            if step % 500 == 0:
                print(f"step {step:5d}  train acc {accuracy:6.1%}  test acc {test_acc:6.1%}  "
                      f"({time.perf_counter() - started:5.1f} s)", flush=True)
        if step % 500 == 0:
            run.log_tensor("w1", model.w1.astype(np.float32), step=step)
        run.log(metrics, step=step)
        if test_acc_streak >= 20:  # generalised and stable: no need to go on
            break
    run.finish()
    print(f"trained {step + 1} steps in {time.perf_counter() - started:.1f} s")

    sql = EMERGENCE_SQL.format(threshold=0.9, hold=5, run_id=run.id)
    print("\nAt which step did each accuracy reach 90% and stay there (5 points in a row)?")
    print(sql.strip())
    result = steplake.connect(args.server).sql(sql).arrow().to_pylist()
    emerged = {row["name"]: row["emerged_at"] for row in result}
    for name in ("train/acc", "test/acc"):
        print(f"  {name:10s} emerged at step {emerged.get(name)}")
    if emerged.get("test/acc") is not None and emerged.get("train/acc") is not None:
        print(f"test accuracy emerged {emerged['test/acc'] - emerged['train/acc']} steps after "
              f"train accuracy: grokking.")


if __name__ == "__main__":
    main()
