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
