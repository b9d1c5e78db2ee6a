"""Class prompts: template text, token ids, end-of-text positions and length groups."""
from __future__ import annotations

from dataclasses import dataclass

import torch


def prompt_texts(classnames: list[str], template: str) -> list[str]:
    return [template.format(name.replace("_", " ")) for name in classnames]


def tokenize(texts: list[str]) -> torch.Tensor:
    import open_clip  # the real CLIP BPE tokenizer, 77 positions
    return open_clip.tokenize(texts)


@dataclass
class Prompts:
    texts: list[str]
    ids: torch.Tensor      # (C, 77) long
    eot: torch.Tensor      # (C,) index of the end-of-text token (argmax of the ids)

    @classmethod
    def build(cls, classnames: list[str], template: str) -> "Prompts":
        texts = prompt_texts(classnames, template)
        ids = tokenize(texts)
        return cls(texts, ids, ids.argmax(dim=-1))

    @property
    def num_classes(self) -> int:
        return len(self.texts)

    @property
    def max_len(self) -> int:
        return int(self.eot.max()) + 1

    def groups(self, max_size: int) -> list[tuple[torch.Tensor, int]]:
        """Classes sorted by prompt length, chunked; each chunk with its own cut length.

        Causal attention makes the feature at eot depend only on positions <= eot, so a
        chunk can drop everything after its longest prompt.
        """
        order = torch.argsort(self.eot, stable=True)
        out = []
        for start in range(0, len(order), max_size):
            idx = order[start:start + max_size]
            out.append((idx, int(self.eot[idx].max()) + 1))
        return out

    def padded_groups(self, max_size: int, pad_budget: int) -> list[tuple[torch.Tensor, int]]:
        """Classes sorted by prompt length and cut into groups of at most ``max_size`` that pad at
        most ``pad_budget`` tokens each (no padding would mean one tiny pass per length)."""
        order = torch.argsort(self.eot, stable=True).tolist()
        eot = self.eot.tolist()
        groups: list[list[int]] = []
        for c in order:
            g = groups[-1] if groups else None
            if g is not None and len(g) < max_size and sum(eot[c] - eot[i] for i in g) <= pad_budget:
                g.append(c)  # sorted, so the newcomer is the group's longest
            else:
                groups.append([c])
        return [(torch.tensor(g), max(eot[i] for i in g) + 1) for g in groups]

    def plan(self, groups: list[tuple[torch.Tensor, int]], device: torch.device) -> "GroupPlan":
        """``groups`` with their indices already on ``device``: a pass over them then copies nothing
        from the host (so it can also be captured in a CUDA graph)."""
        order = torch.cat([idx for idx, _ in groups])
        in_order = torch.equal(order, torch.arange(self.num_classes))
        return GroupPlan([(idx.to(device), length, self.eot[idx].to(device)) for idx, length in groups],
                         None if in_order else order.to(device), self.num_classes)


@dataclass
class GroupPlan:
    groups: list[tuple[torch.Tensor, int, torch.Tensor]]  # (class indices, cut length, eot positions)
    order: torch.Tensor | None  # class of each row of the concatenated groups; None: already class order
    num_classes: int

    def scatter(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Per-group features (in ``groups`` order) reassembled into class order."""
        rows = torch.cat(feats) if len(feats) > 1 else feats[0]
        if self.order is None:
            return rows
        return rows.new_empty((self.num_classes, rows.shape[-1])).index_copy(0, self.order, rows)
