"""Independent brute-force references for the loss (triple loops, no tricks)."""

from __future__ import annotations

import math

import numpy as np


def distance(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    if kind == "sqeuclidean":
        return float(((a - b) ** 2).sum())
    if kind == "euclidean":
        return float(math.sqrt(((a - b) ** 2).sum()))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(1.0 - (a @ b) / (max(na, 1e-12) * max(nb, 1e-12)))


def term(x: float, margin: float, soft: bool) -> float:
    """x = d(a,p) - d(a,n)."""
    return math.log1p(math.exp(x)) if soft else max(x + margin, 0.0)


def reference_loss(emb, labels, margin, mining, kind, soft) -> float:
    emb = np.asarray(emb, dtype=np.float64)
    labels = list(np.asarray(labels))
    n = len(labels)
    d = [[distance(emb[i], emb[j], kind) if i != j else 0.0 for j in range(n)] for i in range(n)]
    if mining == "semihard":
        total, pairs = 0.0, 0
        for a in range(n):
            negs = [d[a][k] for k in range(n) if labels[k] != labels[a]]
            if not negs:
                continue
            for p in range(n):
                if p == a or labels[p] != labels[a]:
                    continue
                farther = [x for x in negs if x > d[a][p]]
                dn = min(farther) if farther else max(negs)
                total += term(d[a][p] - dn, margin, soft)
                pairs += 1
        return total / pairs if pairs else 0.0
    if mining == "hard":
        terms = []
        for a in range(n):
            pos = [d[a][p] for p in range(n) if p != a and labels[p] == labels[a]]
            negs = [d[a][k] for k in range(n) if labels[k] != labels[a]]
            if pos and negs:
                terms.append(term(max(pos) - min(negs), margin, soft))
        return sum(terms) / len(terms) if terms else 0.0
    # all
    terms = []
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for k in range(n):
                if labels[k] == labels[a]:
                    continue
                t = term(d[a][p] - d[a][k], margin, soft)
                if soft or t > 0:
                    terms.append(t)
    return sum(terms) / len(terms) if terms else 0.0


def reference_triplet_choice(emb, triplets, mining, kind):
    """The negative each explicit triplet uses (``None``: no candidate), by loops.

    Candidates are the distinct given negatives, minus the triplet's own
    anchor and positive (by index); ties go to the lowest index.
    """
    emb = np.asarray(emb, dtype=np.float64)
    anchors, positives, negatives = (list(map(int, t)) for t in triplets)
    pool = sorted(set(negatives))
    chosen = []
    for a, p, n in zip(anchors, positives, negatives, strict=True):
        if mining == "none":
            chosen.append(n)
            continue
        cands = [c for c in pool if c not in (a, p)]
        if not cands:
            chosen.append(None)
            continue
        d_ap = distance(emb[a], emb[p], kind)
        dist = {c: distance(emb[a], emb[c], kind) for c in cands}
        if mining == "hard":
            best = min(dist.values())
            chosen.append(next(c for c in cands if dist[c] == best))
            continue
        farther = [c for c in cands if dist[c] > d_ap]
        if farther:
            best = min(dist[c] for c in farther)
            chosen.append(next(c for c in farther if dist[c] == best))
        else:
            worst = max(dist.values())
            chosen.append(next(c for c in cands if dist[c] == worst))
    return chosen


def reference_triplet_loss(emb, triplets, margin, mining, kind, soft) -> float:
    """Loss of explicit triplets ``(anchors, positives, negatives)``, by loops."""
    emb = np.asarray(emb, dtype=np.float64)
    chosen = reference_triplet_choice(emb, triplets, mining, kind)
    terms = []
    for a, p, n in zip(triplets[0], triplets[1], chosen, strict=True):
        if n is None:
            continue
        x = distance(emb[int(a)], emb[int(p)], kind) - distance(emb[int(a)], emb[n], kind)
        terms.append(term(x, margin, soft))
    return sum(terms) / len(terms) if terms else 0.0


# ---------------------------------------------------------------- pair losses
def reference_pairs(labels, n_anchors=None):
    """Every positive (a, p != a, same label) and negative (a, n) pair, anchors first."""
    labels = list(np.asarray(labels))
    n_anchors = len(labels) if n_anchors is None else n_anchors
    pos = [
        (a, j)
        for a in range(n_anchors)
        for j in range(len(labels))
        if j != a and labels[j] == labels[a]
    ]
    neg = [(a, j) for a in range(n_anchors) for j in range(len(labels)) if labels[j] != labels[a]]
    return pos, neg


def _mean_of_nonzero(values):
    kept = [v for v in values if v > 0]
    return sum(kept) / len(kept) if kept else 0.0


def reference_contrastive(emb, pos, neg, kind, pos_margin, neg_margin) -> float:
    """Hadsell et al.: max(d - m_pos, 0) over positive pairs, max(m_neg - d, 0) over
    negative pairs; mean of the non-zero terms of each kind, summed (PML's reduction)."""
    emb = np.asarray(emb, dtype=np.float64)
    pos_terms = [max(distance(emb[a], emb[p], kind) - pos_margin, 0.0) for a, p in pos]
    neg_terms = [max(neg_margin - distance(emb[a], emb[n], kind), 0.0) for a, n in neg]
    return _mean_of_nonzero(pos_terms) + _mean_of_nonzero(neg_terms)


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def reference_ms_mining(emb, labels, epsilon, n_anchors=None):
    """Wang et al. 2019, eqs. 7-8: keep a negative when S + eps > the least similar
    positive, a positive when S - eps < the most similar negative (per anchor)."""
    emb = np.asarray(emb, dtype=np.float64)
    pos, neg = reference_pairs(labels, n_anchors)
    kept_pos, kept_neg = [], []
    for a in range(len(labels) if n_anchors is None else n_anchors):
        p_sims = [cosine(emb[a], emb[p]) for b, p in pos if b == a]
        n_sims = [cosine(emb[a], emb[n]) for b, n in neg if b == a]
        for b, p in pos:
            if b == a and n_sims and cosine(emb[a], emb[p]) - epsilon < max(n_sims):
                kept_pos.append((a, p))
        for b, n in neg:
            if b == a and p_sims and cosine(emb[a], emb[n]) + epsilon > min(p_sims):
                kept_neg.append((a, n))
    return kept_pos, kept_neg


def reference_multi_similarity(emb, pos, neg, alpha, beta, base, n_anchors) -> float:
    """Wang et al. 2019, eq. 6: 1/m sum over anchors of
    1/alpha log(1 + sum_P exp(-alpha (S - base))) + 1/beta log(1 + sum_N exp(beta (S - base)))."""
    emb = np.asarray(emb, dtype=np.float64)
    total = 0.0
    for a in range(n_anchors):
        p_sum = sum(
            math.exp(-alpha * (cosine(emb[a], emb[p]) - base)) for b, p in set(pos) if b == a
        )
        n_sum = sum(math.exp(beta * (cosine(emb[a], emb[n]) - base)) for b, n in set(neg) if b == a)
        total += math.log(1 + p_sum) / alpha + math.log(1 + n_sum) / beta
    return total / n_anchors


# --------------------------------------------------------------- proxy losses
def reference_weights(indices_tuple, n):
    """Each sample's count in the tuple over the largest count; all 1 without a tuple."""
    if indices_tuple is None:
        return [1.0] * n
    counts = [0] * n
    for part in indices_tuple:
        for i in np.asarray(part).tolist():
            counts[i] += 1
    top = max(counts)
    return [c / top for c in counts] if top else [1.0] * n


def _softmax_ce(logits, label) -> float:
    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[label]


def reference_normalized_softmax(emb, weight, labels, temperature, indices_tuple=None) -> float:
    """Zhai & Wu: cross-entropy over cos(z, w_c) / temperature, per sample, weighted."""
    emb, weight = np.asarray(emb, np.float64), np.asarray(weight, np.float64)
    weights = reference_weights(indices_tuple, len(emb))
    total = 0.0
    for z, y, w in zip(emb, labels, weights, strict=True):
        total += w * _softmax_ce([cosine(z, wc) / temperature for wc in weight], int(y))
    return total / len(emb)


def reference_arcface(emb, weight, labels, scale, margin, indices_tuple=None) -> float:
    """Deng et al.: s cos(theta_y + m) for the true class (s (cos theta_y - m sin m) past
    theta_y > pi - m), s cos(theta_c) for the others; cross-entropy, per sample, weighted."""
    emb, weight = np.asarray(emb, np.float64), np.asarray(weight, np.float64)
    weights = reference_weights(indices_tuple, len(emb))
    total = 0.0
    for z, y, w in zip(emb, labels, weights, strict=True):
        logits = []
        for c, wc in enumerate(weight):
            cos_c = cosine(z, wc)
            if c == int(y):
                theta = math.acos(max(-1.0, min(1.0, cos_c)))
                cos_c = (
                    math.cos(theta + margin)
                    if theta <= math.pi - margin
                    else (cos_c - margin * math.sin(margin))
                )
            logits.append(scale * cos_c)
        total += w * _softmax_ce(logits, int(y))
    return total / len(emb)


# ------------------------------------------------------------ anchored triplets
def reference_anchored_triplets(emb, labels, mining, kind, n_anchors):
    """Semi-hard or batch-hard triplets with anchors among the first n_anchors samples
    and positives / negatives anywhere (a batch followed by a memory), by loops."""
    emb = np.asarray(emb, dtype=np.float64)
    labels = list(np.asarray(labels))
    out = []
    for a in range(n_anchors):
        pos = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negs = [k for k in range(len(labels)) if labels[k] != labels[a]]
        if not pos or not negs:
            continue
        d = {j: distance(emb[a], emb[j], kind) for j in range(len(labels))}
        if mining == "hard":
            p = max(pos, key=lambda j: (d[j], -j))
            n = min(negs, key=lambda j: (d[j], j))
            out.append((a, p, n))
            continue
        for p in pos:
            farther = [k for k in negs if d[k] > d[p]]
            n = (
                min(farther, key=lambda j: (d[j], j))
                if farther
                else max(negs, key=lambda j: (d[j], -j))
            )
            out.append((a, p, n))
    return out
