"""Chat-template masking, packing without cross-attention, and the validators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_tiny import chats

from hivemind_trainer.recipe.chat_format import IGNORE, encode_chat
from hivemind_trainer.recipe.packing import block_mask, pack
from hivemind_trainer.recipe.validators import ValidationFailed, regions, validate


def trained_text(tok: Any, enc: Any) -> list[str]:
    return [tok.decode(enc.input_ids[s:e]) for s, e in regions(enc.labels)]


def test_only_assistant_replies_and_their_end_token_carry_labels(tokenizer: Any) -> None:
    conv = chats(1)[0]  # system + two user/assistant turns
    enc = encode_chat(tokenizer, conv)
    assert trained_text(tokenizer, enc) == [
        "0 plus 1 is 1.<|im_end|>",
        "Doubled it is 2.<|im_end|>",
    ]
    # nothing of the system prompt, the user turns or the headers is trained
    assert all(lab == IGNORE for lab in enc.labels[: enc.input_ids.index(2)])
    assert len(enc.labels) == len(enc.input_ids)


def test_masking_with_smollm2s_own_tokenizer_and_template(smollm2_tokenizer: Any) -> None:
    conv = [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "Seven is prime."},
    ]
    enc = encode_chat(smollm2_tokenizer, conv)
    assert trained_text(smollm2_tokenizer, enc) == ["Seven is prime.<|im_end|>"]
    # the default system prompt SmolLM2's template adds is not trained
    assert "SmolLM" in enc.text


def test_packed_chats_cannot_attend_to_each_other(tokenizer: Any, tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="sdpa").eval()
    encoded = [encode_chat(tokenizer, c) for c in chats(4, offset=1)]
    batch = pack(encoded, 512, tokenizer.pad_token_id)
    assert batch.input_ids.shape[0] == 1  # all four share one row
    with torch.no_grad():
        packed = model(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            attention_mask=block_mask(batch.segment_ids),
        ).logits[0]
        for seg in range(4):
            idx = (batch.segment_ids[0] == seg).nonzero().flatten()
            alone_ids = batch.input_ids[0, idx][None]
            alone = model(input_ids=alone_ids).logits[0]
            torch.testing.assert_close(packed[idx], alone, atol=1e-4, rtol=1e-4)
    # and the explicit mask says the same: no True between different chats
    mask = block_mask(batch.segment_ids)[0, 0]
    seg = batch.segment_ids[0]
    assert not mask[seg[:, None] != seg[None, :]].any()


def test_packing_changes_logits_when_the_boundaries_are_ignored(
    tokenizer: Any, tiny_llama_dir: Path
) -> None:
    """The isolation test above can fail: without the block mask the chats do mix."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa").eval()
    encoded = [encode_chat(tokenizer, c) for c in chats(2, offset=1)]
    batch = pack(encoded, 512, tokenizer.pad_token_id)
    idx = (batch.segment_ids[0] == 1).nonzero().flatten()
    with torch.no_grad():
        mixed = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits[0, idx]
        alone = model(input_ids=batch.input_ids[0, idx][None]).logits[0]
    assert not torch.allclose(mixed, alone, atol=1e-3)


def test_validators_pass_good_data_and_stop_bad_masks(tokenizer: Any) -> None:
    convs = chats(6)
    good = [encode_chat(tokenizer, c) for c in convs]
    report = validate(good, convs, tokenizer, end_token="<|im_end|>", min_share=0.05, max_share=0.9)
    assert report.ok and 0.05 < report.trained_share < 0.9

    everything = [encode_chat(tokenizer, c) for c in convs]
    for enc in everything:
        enc.labels = list(enc.input_ids)  # a masking bug: train on the prompt too
    with pytest.raises(ValidationFailed, match=r"trained regions|prompt|header|share"):
        validate(
            everything, convs, tokenizer, end_token="<|im_end|>", min_share=0.05, max_share=0.9
        )

    no_end = [encode_chat(tokenizer, c) for c in convs]
    for enc in no_end:
        for _s, e in regions(enc.labels):
            enc.labels[e - 1] = IGNORE  # the end-of-turn token left untrained
    with pytest.raises(ValidationFailed, match="end-of-turn"):
        validate(no_end, convs, tokenizer, end_token="<|im_end|>", min_share=0.01, max_share=0.9)

    nothing = [encode_chat(tokenizer, c) for c in convs]
    for enc in nothing:
        enc.labels = [IGNORE] * len(enc.labels)
    with pytest.raises(ValidationFailed):
        validate(nothing, convs, tokenizer, end_token="<|im_end|>", min_share=0.05, max_share=0.9)
