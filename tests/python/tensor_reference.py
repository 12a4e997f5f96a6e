"""numpy's answers for steplake's tensor functions (the reference of the tests).

Reads JSON from stdin: {"a": {"shape": [...], "values": [...]}, "b": ..., "x": ..., "y": ...}
and prints JSON {function name: result}, computed with numpy only.
"""

import json
import sys

import numpy as np


def main():
    tensors = json.load(sys.stdin)
    t = {k: np.array(v["values"], dtype=np.float64).reshape(v["shape"]) for k, v in tensors.items()}
    a, b, x, y = t["a"], t["b"], t["x"], t["y"]
    s = np.linalg.svd(a, compute_uv=False)
    p = s / s.sum()
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    fro = lambda m: np.linalg.norm(m, "fro")
    out = {
        "l2_norm": float(np.linalg.norm(a.ravel())),
        "linf_norm": float(np.abs(a).max()),
        "rms": float(np.sqrt(np.mean(a**2))),
        "t_mean": float(a.mean()),
        "t_std": float(a.std()),
        "cosine_sim": float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b))),
        "l2_dist": float(np.linalg.norm(a - b)),
        "rel_change": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
        "histogram": np.histogram(a, bins=10, range=(-1.0, 1.0))[0].tolist(),
        "quantiles": np.quantile(a, [0.1, 0.5, 0.9]).tolist(),
        "tensor_slice": a.take(3, axis=1).ravel().tolist(),
        "spectral_norm": float(s[0]),
        "stable_rank": float((a**2).sum() / s[0] ** 2),
        "effective_rank": float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())),
        "linear_cka": float(fro(yc.T @ xc) ** 2 / (fro(xc.T @ xc) * fro(yc.T @ yc))),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
