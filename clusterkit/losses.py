"""Loss functions of the five papers and their common ancestor DEC/IDEC.

Each is vectorised over the batch (and over pairs, where there are pairs), takes and
returns tensors, and names its paper and equation in a one-line comment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC eq 3: p_ij = (q_ij² / f_j) / Σ_j' (q_ij'² / f_j'), f_j = Σ_i q_ij.  (n, k) -> (n, k)."""
    w = q.pow(2) / q.sum(0, keepdim=True)
    return w / w.sum(1, keepdim=True)


def kl_clustering(q: torch.Tensor, p: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """DEC eq 2: KL(P || Q), summed over clusters and averaged over the batch.

    (``F.kl_div(reduction="mean")`` would divide by B·k, 1/k of the per-sample KL.)
    """
    return F.kl_div(torch.log(q + eps), p, reduction="batchmean")


def reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """IDEC eq 3 / autoencoder pretraining: mean squared error per element."""
    return F.mse_loss(x_hat, x)


def rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` for a 1-d index tensor (rows may repeat), with a backward pass that repeats
    exactly on a multi-threaded CPU: advanced indexing's backward adds the gradients of
    repeated rows in an order that depends on thread timing, ``index_select``'s does not.
    Use it to gather the ends of pairs from a tensor that needs a gradient."""
    return x.index_select(0, idx)


def contrastive(za: torch.Tensor, zb: torch.Tensor, same: torch.Tensor,
                margin: float = 1.0) -> torch.Tensor:
    """ADC eq 2, averaged over the pairs: y ||f_i - f_j||² + (1 - y) max(δ - ||f_i - f_j||, 0)².

    za, zb: (P, d) embeddings of the two sides; same: (P,) bool (True = must-link, y_ij = 1);
    margin δ > 0. Returns a scalar (0 when there are no pairs).
    """
    if za.shape[0] == 0:
        return za.sum() * 0.0
    d2 = (za - zb).pow(2).sum(1)
    d = torch.sqrt(d2 + 1e-12)
    per = torch.where(same, d2, torch.clamp(margin - d, min=0.0).pow(2))  # eq (2)
    return per.mean()


# ---------------------------------------------------------------------------------------------
# Balanced semi-supervised deep clustering (Duan et al., TNNLS 2024; PAPERS.md section 1)

def balance_loss(y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Balanced semi-supervised clustering eq 7: ||Y||_h = Σ_j (Σ_i y_ij²)^-1.

    y: (n, k) assignments (soft or hard). Returns a scalar, at least k²/n (eq 6), reached by
    hard assignments with equal cluster sizes n/k (Theorem 1).
    """
    return (y.pow(2).sum(0) + eps).reciprocal().sum()  # eq (7)


def pair_violation(yi: torch.Tensor, yj: torch.Tensor, is_ml: torch.Tensor) -> torch.Tensor:
    """Balanced semi-supervised clustering eqs 8/13: how far each pair is from its constraint.

    yi, yj: (m, k) assignments of the two ends of m pairs; is_ml: (m,) bool. Returns (m,):
    ``1 - <Y_i, Y_j>`` for must-link, ``<Y_i, Y_j>`` for cannot-link (0 = satisfied).
    """
    inner = (yi * yj).sum(1)
    return torch.where(is_ml, 1.0 - inner, inner)  # eq (8)


def semi_loss(yi: torch.Tensor, yj: torch.Tensor, is_ml: torch.Tensor, mult: torch.Tensor,
              reduction: str = "sum") -> torch.Tensor:
    """Balanced semi-supervised clustering eqs 13-14: the multiplier-weighted violations.

    yi, yj: (m, k); is_ml: (m,) bool; mult: (m,) Lagrange multipliers (λ for ML rows, μ for
    CL rows). ``reduction="sum"``: Σ over the m pairs (eq 14's ½ cancels its symmetric
    matrices counting each pair twice); ``"mean"``: divided by m. Zero when every constraint
    is met by hard assignments.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")
    total = (mult * pair_violation(yi, yj, is_ml)).sum()  # eq (13)/(14)
    return total / max(len(mult), 1) if reduction == "mean" else total


@torch.no_grad()
def dual_ascent(mult: torch.Tensor, violation: torch.Tensor, gamma: float, cap: float,
                rule: str = "eq17", skip_above: bool = False) -> torch.Tensor:
    """Balanced semi-supervised clustering eqs 17-18: one dual-ascent step on the multipliers.

    mult, violation: (m,) (violation from :func:`pair_violation`, >= 0). ``rule="eq17"``:
    ``mult + γ·violation`` (the text's additive step); ``"eq18"``: ``mult + γ·mult·violation``
    (the matrix form as printed). The result is clipped to ``[0, cap]``; with ``skip_above``
    (the authors' code) an update that would exceed ``cap`` is skipped instead. Returns (m,).
    """
    if rule == "eq17":
        new = mult + gamma * violation  # eq (17)
    elif rule == "eq18":
        new = mult + gamma * mult * violation  # eq (18)
    else:
        raise ValueError(f"rule must be 'eq17' or 'eq18'; got {rule!r}")
    if skip_above:
        return torch.where(new > cap, mult, new).clamp_min(0.0)
    return new.clamp(0.0, cap)


# ---------------------------------------------------------------- DECS (Cheng et al.), seed 003
@torch.no_grad()
def otsu_threshold(q: torch.Tensor, bins: int = 1000) -> torch.Tensor:
    """Otsu's threshold of the values ``q`` in [0, 1] (DECS eq 6's t), without gradient.

    A ``bins``-bin histogram over [0, 1]; for every cut between bins the between-class
    variance ``(mu_T w - mu)² / (w (1 - w))`` from cumulative sums (no loop over cuts); the
    best cut's upper bin edge is returned, so values ``< t`` form the lower class.
    q: any shape; returns a 0-d float tensor on q's device (the mean of q when all values
    fall in one bin and there is nothing to split).
    """
    v = q.detach().reshape(-1).float().clamp(0.0, 1.0)
    hist = torch.histc(v, bins=bins, min=0.0, max=1.0)
    p = hist / hist.sum().clamp_min(1.0)
    centres = (torch.arange(bins, device=v.device, dtype=v.dtype) + 0.5) / bins
    w = torch.cumsum(p, 0)  # weight of the lower class, cut after each bin
    mu = torch.cumsum(p * centres, 0)
    between = (mu[-1] * w - mu).pow(2) / (w * (1.0 - w)).clamp_min(1e-12)
    between = torch.where((w > 1e-12) & (w < 1.0 - 1e-6), between, torch.full_like(between, -1.0))
    cut = torch.argmax(between)
    t = (cut + 1).to(v.dtype) / bins
    return torch.where(between[cut] > 0, t, v.mean())


def determinacy(q: torch.Tensor, t: torch.Tensor | float, squared: bool = True) -> torch.Tensor:
    """DECS eq 6: how sure q is, elementwise: 0 at q = t, 1 at q = 0 and at q = 1.

    ``squared``: the paper's ``(q - t)²/t²`` below t and ``(q - t)²/(1 - t)²`` above;
    otherwise the authors' code's linear ``|q - t|/t`` and ``|q - t|/(1 - t)``.
    q: (B, k); t: scalar in (0, 1); returns (B, k).
    """
    t = torch.as_tensor(t, dtype=q.dtype, device=q.device).clamp(1e-6, 1.0 - 1e-6)
    r = torch.where(q < t, (t - q) / t, (q - t) / (1.0 - t))  # eq (6)
    return r.pow(2) if squared else r


def stability(f: torch.Tensor, lam: float = 0.8) -> torch.Tensor:
    """DECS eq 7: s_i = mean_j f_ij - λ var_j f_ij (population variance).  (B, k) -> (B,)."""
    return f.mean(1) - lam * f.var(1, unbiased=False)  # eq (7)


def stability_loss(s: torch.Tensor, variance_term: bool = False) -> torch.Tensor:
    """DECS eq 8: L_c = 1 - mean_i s_i.  s: (B,); returns a scalar.

    ``variance_term``: the authors' code's ``1 - (mean_i s_i + var_i s_i)``.
    """
    loss = 1.0 - s.mean()  # eq (8)
    return loss - s.var(unbiased=False) if variance_term else loss


# --------------------------------------------------------------------------- ClusterNet


def kl_matrix(log_p: torch.Tensor) -> torch.Tensor:
    """ClusterNet eq 1 for every ordered pair of a batch: M[i, j] = KL(p_i || p_j).

    log_p: (B, k) log-probabilities; returns (B, B). The first argument p_i is held fixed
    (detached), so M[i, j] trains p_j only: summing M[i, j] and M[j, i] gives eq 2 "by first
    fixing p and computing the divergence of q from p and vice versa".
    """
    lp = log_p.detach()
    p = lp.exp()
    return (p * lp).sum(1, keepdim=True) - p @ log_p.T


def pair_loss(log_p: torch.Tensor, labels: torch.Tensor, margin: float,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ClusterNet eqs 6-7: mean over similar pairs of KL(p||q) + KL(q||p), plus mean over
    dissimilar pairs of [m - KL(p||q)]_+ + [m - KL(q||p)]_+.

    log_p: (B, k) log assignment probabilities; labels: (B,) int, the (true or predicted)
    cluster of each point; pairs (i, j), i != j, of the points where ``mask`` (B,) bool is
    True (all when None) are enumerated as B x B matrices. Returns (similar, dissimilar)
    scalars, each 0 when its pair set is empty.
    """
    b = log_p.shape[0]
    keep = torch.ones(b, dtype=torch.bool, device=log_p.device) if mask is None else mask
    pair = keep[:, None] & keep[None, :] & ~torch.eye(b, dtype=torch.bool, device=log_p.device)
    same = labels[:, None] == labels[None, :]
    kl = kl_matrix(log_p)
    sym = kl + kl.T  # eq 2, each direction with its target fixed
    hinge = F.relu(margin - kl) + F.relu(margin - kl.T)  # L_dissim
    sim_pairs, dis_pairs = pair & same, pair & ~same
    zero = log_p.sum() * 0.0
    sim = sym[sim_pairs].mean() if sim_pairs.any() else zero
    dis = hinge[dis_pairs].mean() if dis_pairs.any() else zero
    return sim, dis


def kmeans_loss(z: torch.Tensor, centers: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
    """ClusterNet eqs 4-5: mean over points of ||z_i - C a_i||², the squared distance to the
    assigned centre. z: (B, d), centers: (k, d) (held fixed), assign: (B,) int."""
    if z.shape[0] == 0:
        return z.sum() * 0.0
    return (z - centers.detach()[assign]).pow(2).sum(1).mean()


def anneal_lambda(epoch: float, t1: float, t2: float) -> float:
    """ClusterNet eq 17: λ = 0 before epoch T1, (t - T1) / (T2 - T1) between, 1 from T2 on."""
    if t2 <= t1:
        raise ValueError(f"annealing needs T1 < T2; got T1={t1}, T2={t2}")
    return float(min(1.0, max(0.0, (epoch - t1) / (t2 - t1))))


def contractive_penalty(mlp: torch.nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """DCCF eq 6: ||J_f(x)||_F² = Σ_ij (∂h_j / ∂x_i)², exactly, for a Linear/ReLU stack.

    For a ReLU MLP the Jacobian of one sample is W_L D_{L-1} W_{L-1} ... D_1 W_1 with D_l the
    0/1 activation masks, so it is built backwards from the output as one (B, k, width)
    tensor: k (= embedding size) rows per sample, no loop over outputs or samples.
    x: (B, ...) float32 (flattened); returns the embedding h (B, k) of the same forward pass
    and the penalty (B,) float32, both differentiable in the weights.
    """
    lins = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    if not lins or any(not isinstance(m, (torch.nn.Linear, torch.nn.ReLU)) for m in mlp):
        raise ValueError("contractive_penalty needs an nn.Sequential of Linear and ReLU layers "
                         f"(an MLPAutoencoder encoder); got {[type(m).__name__ for m in mlp]}")
    h = x.reshape(x.shape[0], -1)
    masks = []
    for m in mlp:
        h = m(h)
        if isinstance(m, torch.nn.ReLU):
            masks.append((h > 0).to(h.dtype))
    jac = lins[-1].weight.unsqueeze(0)  # (1, k, w_L): rows of J, built backwards
    for lin, mask in zip(reversed(lins[:-1]), reversed(masks), strict=True):
        jac = (jac * mask.unsqueeze(1)) @ lin.weight  # (B, k, w_{l-1})
    return h, jac.pow(2).sum((1, 2))


def focal_weight(p_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """DCCF eq 12's modulating factor (1 - p_t)^γ: near 0 for confident samples."""
    return (1.0 - p_t).clamp_min(0.0).pow(gamma)


def focal_loss(q: torch.Tensor, t: torch.Tensor, gamma: float = 2.0, soft: bool = False,
               eps: float = 1e-10) -> torch.Tensor:
    """DCCF eq 12: -(1 - p_t)^γ log p_t against the self-training target, batch mean.

    q: (B, k) soft assignments S; t: (B, k) target T (no gradient flows into it).
    ``soft=False``: p_t = s_ic with c = argmax_j t_ij. ``soft=True`` (DCCF's default): the
    target as soft labels, Σ_j t_ij (1 - s_ij)^γ (-log s_ij) (a Keras-style categorical focal
    loss with y_true = T). At γ = 0 both are the cross-entropy against the target.
    """
    t = t.detach()
    if soft:
        return (t * focal_weight(q, gamma) * -torch.log(q + eps)).sum(1).mean()
    p_t = q.gather(1, t.argmax(1, keepdim=True)).squeeze(1)
    return (focal_weight(p_t, gamma) * -torch.log(p_t + eps)).mean()


def dccf_clustering(q: torch.Tensor, t: torch.Tensor, gamma: float = 2.0,
                    soft: bool = False) -> torch.Tensor:
    """DCCF eq 13: L_c = KL(T || S) + focal loss; (B, k) soft assignments and target."""
    return kl_clustering(q, t.detach()) + focal_loss(q, t, gamma, soft)
