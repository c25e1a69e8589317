"""
Task similarity from the intrinsic subspace (beyond the paper): if z is where IST puts a task in the
subspace MSF found, tasks of one category should sit in similar directions. The cosine similarity of
every pair of tasks' z, ordered by kind and category, is drawn as a heatmap (draw),
and one number says how much of the table's ontology it shows:

    block score = mean cosine over pairs within a category − mean cosine over pairs across categories

0 when z knows nothing of the categories; up to 2 when every category's z point one way and
different categories opposite ways.
"""
import math

import torch
import torch.nn.functional as F

from runner import figures


def cosine_matrix(z):
    """(K, d_I) -> (K, K) cosine similarity of every pair of rows."""
    unit = F.normalize(z.double(), dim=1)
    return (unit @ unit.T).float()


def block_score(similarity, groups):
    """Mean similarity within groups (pairs i ≠ j of one group) minus across groups; nan when there
    are no pairs of one of the two kinds."""
    g = torch.tensor([sorted(set(groups)).index(x) for x in groups])
    same = g[:, None] == g[None, :]
    off_diagonal = ~torch.eye(len(groups), dtype=torch.bool)
    within, across = similarity[same & off_diagonal], similarity[~same]
    if not len(within) or not len(across):
        return math.nan
    return (within.mean() - across.mean()).item()


def order(names, kinds, categories):
    """Indices that sort the tasks by kind, then category, then name: the heatmap's blocks."""
    return sorted(range(len(names)), key=lambda i: (kinds[i], categories[i], names[i]))


def draw(names, sim, kinds, categories, dim, path):
    """The cosine similarity of every pair of tasks' z, tasks ordered by kind and category, each
    category's block outlined and named."""
    idx = order(names, kinds, categories)
    labels = [f"{kinds[i]}/{categories[i]}" for i in idx]
    edges = [0] + [k for k in range(1, len(idx)) if labels[k] != labels[k - 1]] + [len(idx)]
    fig, ax = figures.plt.subplots(figsize=(8, 7))
    shown = ax.imshow(sim[idx][:, idx], cmap="RdBu_r", vmin=-1, vmax=1)
    for e in edges[1:-1]:
        ax.axhline(e - 0.5, color="black", linewidth=0.6)
        ax.axvline(e - 0.5, color="black", linewidth=0.6)
    centres = [(a + b - 1) / 2 for a, b in zip(edges, edges[1:])]
    ax.set_xticks(centres, [labels[a] for a in edges[:-1]], rotation=90, fontsize=6)
    ax.set_yticks(centres, [labels[a] for a in edges[:-1]], fontsize=6)
    fig.colorbar(shown, ax=ax, label="cosine similarity of z")
    ax.set_title(f"Task similarity in the intrinsic subspace: cosine of IST's z (d_I = {dim}, {len(names)} tasks)")
    figures.save(fig, path)
