"""Pack encoded chats into fixed-length rows without letting them attend to each other.

Chats go into rows first-fit by decreasing length; :func:`fill_steps` cuts a chat order into
optimizer steps whose chats fit a number of rows, so a step's loss is the per-token mean over the
same chats a padded batch of them would hold. Every chat's position ids start again at 0, and
:func:`block_mask` gives the model an explicit 4-D block-diagonal causal mask (boolean, for
SDPA), so a token sees only its own chat. (Position-id resets alone are not enough: the
transformers release we use does not infer the blocks from them for SDPA, and the tests show
the chats then mix.) The tail of a row is padding: its own block, no labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hivemind_trainer.recipe.chat_format import IGNORE, EncodedChat


@dataclass
class PackedBatch:
    """Rows of packed chats: ids, labels, position ids and the chat index of each token."""

    input_ids: torch.Tensor  # (rows, seq_len) long
    labels: torch.Tensor  # (rows, seq_len) long, IGNORE where no loss
    position_ids: torch.Tensor  # (rows, seq_len) long, restarting at each chat
    segment_ids: torch.Tensor  # (rows, seq_len) long, -1 on padding

    @property
    def real_tokens(self) -> int:
        return int((self.segment_ids >= 0).sum())

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


def pack_rows(chats: list[EncodedChat], seq_len: int) -> list[list[int]]:
    """Indices of the chats in each row (first fit, longest first); longer chats are left out."""
    order = sorted(
        (i for i, c in enumerate(chats) if len(c.input_ids) <= seq_len),
        key=lambda i: -len(chats[i].input_ids),
    )
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(chats[i].input_ids)
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(seq_len - n)
    return rows


def fill_steps(
    chats: list[EncodedChat], order: list[int], seq_len: int, rows: int
) -> list[list[int]]:
    """Cut ``order`` (chat indices) into consecutive steps whose chats pack into ``rows`` rows.

    A step takes chats in the given order until the next one would need another row; chats
    longer than ``seq_len`` are left out (as :func:`pack_rows` leaves them out).
    """
    steps: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if len(chats[i].input_ids) > seq_len:
            continue
        if current and len(pack_rows([chats[j] for j in (*current, i)], seq_len)) > rows:
            steps.append(current)
            current = []
        current.append(i)
    if current:
        steps.append(current)
    return steps


def build_batch(
    chats: list[EncodedChat], rows: list[list[int]], seq_len: int, pad_id: int
) -> PackedBatch:
    """Tensors for the given rows of chat indices."""
    n = len(rows)
    ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    positions = torch.zeros((n, seq_len), dtype=torch.long)
    segments = torch.full((n, seq_len), -1, dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for seg, i in enumerate(members):
            chat = chats[i]
            k = len(chat.input_ids)
            ids[r, at : at + k] = torch.tensor(chat.input_ids)
            lab = torch.tensor(chat.labels)
            lab[0] = IGNORE  # a chat's first token is never predicted from the chat before it
            labels[r, at : at + k] = lab
            positions[r, at : at + k] = torch.arange(k)
            segments[r, at : at + k] = seg
            at += k
        positions[r, at:] = torch.arange(seq_len - at)
    return PackedBatch(ids, labels, positions, segments)


def pack(chats: list[EncodedChat], seq_len: int, pad_id: int) -> PackedBatch:
    """Pack every chat that fits into as few rows as first-fit finds."""
    return build_batch(chats, pack_rows(chats, seq_len), seq_len, pad_id)


def block_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(rows, 1, L, L) boolean mask: causal, and only within the same chat (padding sees itself)."""
    seq_len = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    return (same & causal)[:, None]
