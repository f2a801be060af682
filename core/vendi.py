"""G-Vendi and the Vendi family from features (PAPER.md section 2, steps 5-7).

Rows are unit-normalised; S = (1/N) sum_i u_i u_i^T (d x d) has the same non-zero
eigenvalues as the cosine kernel K/N; G-Vendi = exp(entropy of those eigenvalues).
"""

from __future__ import annotations

import numpy as np


def second_moment(features: np.ndarray) -> np.ndarray:
    """S = U^T U / N for the unit-normalised rows U of `features` (N x d), in float64."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(norms > 0, norms, 1.0)
    return u.T @ u / len(u)


def vendi_from_eigenvalues(eigenvalues: np.ndarray, q: float = 1.0) -> float:
    """exp of the order-q Renyi entropy of the eigenvalues (which sum to 1)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()
    if q == 1:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    if np.isinf(q):
        return float(1.0 / lam.max())
    return float(np.exp(np.log(np.sum(lam**q)) / (1 - q)))


def g_vendi(features: np.ndarray, q: float = 1.0) -> float:
    """G-Vendi of a feature matrix (N x d): the effective number of gradient directions."""
    return vendi_from_eigenvalues(np.linalg.eigvalsh(second_moment(features)), q)
