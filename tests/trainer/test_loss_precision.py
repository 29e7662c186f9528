"""The packed loss is the padded loss, steps are planned by chats, and bf16 keeps LoRA's update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_tiny import chats

from hivemind_trainer.recipe import model_io
from hivemind_trainer.recipe.chat_format import IGNORE, encode_chat
from hivemind_trainer.recipe.config import RecipeConfig
from hivemind_trainer.recipe.lora_recipe import LoraRecipe
from hivemind_trainer.recipe.loss import packed_loss_sum
from hivemind_trainer.recipe.packing import block_mask, fill_steps, pack, pack_rows
from hivemind_trainer.recipe.precision import PACKED, PACKED_FLOAT32, recipe_forward, segments_of

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def lora_model(base_dir: Path, *, b_scale: float = 0.05) -> Any:
    """The tiny base with a LoRA whose B is not zero, so the adapter changes the output."""
    torch.manual_seed(0)
    model = model_io.attach_lora(
        model_io.load_model(base_dir, device="cpu"),
        adapter_dir=None,
        r=8,
        alpha=16,
        dropout=0.0,
        targets=TARGETS,
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, b_scale)
    return model


def padded_mean_loss(model: Any, encoded: list[Any], pad: int) -> torch.Tensor:
    """What a transformers Trainer computes: right-padded batch, loss summed / labelled tokens."""
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad)
    labels = torch.full((len(encoded), width), IGNORE)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, enc in enumerate(encoded):
        k = len(enc.input_ids)
        ids[row, :k] = torch.tensor(enc.input_ids)
        labels[row, :k] = torch.tensor(enc.labels)
        mask[row, :k] = 1
    count = int((labels[:, 1:] != IGNORE).sum())
    out = model(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=count)
    return out.loss  # type: ignore[no-any-return]


def test_one_packed_step_is_the_padded_per_token_mean_of_the_same_chats(
    tokenizer: Any, tiny_dir: Path
) -> None:
    model = lora_model(tiny_dir).eval()
    encoded = [encode_chat(tokenizer, c) for c in chats(7)]
    batch = pack(encoded, 128, tokenizer.pad_token_id)
    assert batch.input_ids.shape[0] < len(encoded)  # several chats share a row
    with torch.no_grad():
        total, n = packed_loss_sum(model, batch, device="cpu", dtype=None)
        padded = padded_mean_loss(model, encoded, tokenizer.pad_token_id)
        assert n == sum(sum(1 for x in e.labels[1:] if x != IGNORE) for e in encoded)
        torch.testing.assert_close(total / n, padded, rtol=1e-5, atol=1e-5)
        mixed, _ = packed_loss_sum(model, batch, device="cpu", dtype=torch.bfloat16)
    assert abs(float(mixed) / n - float(padded)) < 0.01


def test_steps_are_planned_by_chats_that_fill_the_rows(
    tokenizer: Any, tiny_llama_dir: Path
) -> None:
    cfg = RecipeConfig.from_mode("fast", seq_len=96, batch_size=2, epochs=2.0, seed=5, min_steps=0)
    recipe = LoraRecipe(cfg, tiny_llama_dir)
    recipe.tokenizer = tokenizer
    prepared = recipe.prepare(chats(30), check=False)
    plan = recipe.plan(prepared)
    assert plan == recipe.plan(prepared)  # seeded: a benchmark can replay it
    first, second = [], []
    for step in plan:
        assert len(pack_rows([prepared.chats[i] for i in step], cfg.seq_len)) <= cfg.batch_size
        (first if len(first) < len(prepared.chats) else second).extend(step)
    assert sorted(first) == sorted(second) == list(range(len(prepared.chats)))  # once per epoch
    assert first != second  # reshuffled for the second epoch
    capped = LoraRecipe(RecipeConfig.from_mode("fast", seq_len=96, batch_size=2, max_steps=3), ".")
    capped.tokenizer = tokenizer
    assert len(capped.plan(prepared)) == 3
    # a step closes at the first chat that would need another row; too-long chats are left out
    lengths = [len(c.input_ids) for c in prepared.chats]
    order = list(range(len(lengths)))
    steps = fill_steps(prepared.chats, order, max(lengths) - 1, 1)
    assert all(lengths[i] < max(lengths) for step in steps for i in step)


def test_under_bf16_a_small_lora_update_is_added_in_float32(tiny_llama_dir: Path) -> None:
    """The cause of a bf16 loop ending worse than float32: LoRA's update rounded away."""
    model = lora_model(tiny_llama_dir, b_scale=1e-4).eval()  # an update ~0.2% of the output
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    x = torch.randn(64, 64) * 4
    with torch.no_grad():
        update = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            frozen = layer.base_layer(x).float()
            plain = layer(x).float()
            with recipe_forward(model, torch.bfloat16):
                kept = layer(x)
    assert kept.dtype == torch.float32
    torch.testing.assert_close(kept - frozen, update, rtol=1e-4, atol=1e-6)
    # plain autocast adds it in bf16: a good part of the update is rounding error
    error = float((plain - frozen - update).abs().mean()) / float(update.abs().mean())
    assert error > 0.3, error


def test_float32_lora_and_attention_only_inside_the_block(tiny_llama_dir: Path) -> None:
    model = lora_model(tiny_llama_dir).eval()
    base = model.get_base_model()
    seen: list[torch.dtype] = []
    hook = base.model.layers[0].self_attn.register_forward_hook(
        lambda _m, _i, out: seen.append(out[0].dtype)
    )
    ids = torch.tensor([[1, 5, 9, 20, 33]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with recipe_forward(model, torch.bfloat16):
            assert base.config._attn_implementation == PACKED_FLOAT32
            model(input_ids=ids)
        model(input_ids=ids)
    hook.remove()
    assert base.config._attn_implementation == "sdpa"
    assert not any("forward" in vars(m) for m in base.modules())  # PEFT's forward is back
    # o_proj's output: float32 (LoRA sum) inside, bf16 outside
    assert seen == [torch.float32, torch.bfloat16]
    with recipe_forward(model, None):  # float32: attention per chat, PEFT's own LoRA forward
        assert base.config._attn_implementation == PACKED
        assert not any("forward" in vars(m) for m in base.modules())


def test_attention_chat_by_chat_equals_the_block_masked_row(tokenizer: Any, tiny_dir: Path) -> None:
    model = lora_model(tiny_dir).eval()
    encoded = [encode_chat(tokenizer, c) for c in chats(9)]
    batch = pack(encoded, 160, tokenizer.pad_token_id)
    segments = segments_of(batch.segment_ids)
    assert batch.input_ids.shape[0] >= 2 and all(len(b) > 3 for b in segments)
    decoder = model.get_base_model().get_decoder()
    args = dict(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        attention_mask=block_mask(batch.segment_ids),
    )
    with torch.no_grad():
        masked = decoder(**args).last_hidden_state  # SDPA over whole rows, under the mask
        with recipe_forward(model, None):
            by_chat = decoder(**args, segments=segments).last_hidden_state
    real = batch.segment_ids >= 0
    torch.testing.assert_close(by_chat[real], masked[real], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_bf16_training_keeps_float32_lora_weights_moments_and_exact_frozen_weights(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    import dataclasses

    from hivemind_trainer.recipe.config import detect_hardware

    hw = dataclasses.replace(detect_hardware(), dtype="bfloat16")
    cfg = RecipeConfig.from_mode(
        "fast", batch_size=1, epochs=20.0, max_steps=3, checkpoint_every=2, log_every=1
    )
    recipe = LoraRecipe(cfg, tiny_llama_dir, hardware=hw)
    recipe.setup()
    frozen = {
        n: p.detach().clone() for n, p in recipe.model.named_parameters() if not p.requires_grad
    }
    recipe.train(recipe.prepare(chats(8)), checkpoint_dir=tmp_path)
    params = dict(recipe.model.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    assert all(torch.equal(frozen[n], params[n]) for n in frozen)
    state = torch.load(tmp_path / "state.pt")  # written at step 2 of 3
    saved = [o["state"] for o in state["optimizer"]["optimizers"]]  # one per optimizer
    moments = [t for opt in saved for s in opt.values() for t in s.values() if t.ndim]
    assert moments and all(t.dtype == torch.float32 for t in moments)
    assert all(t.dtype == torch.float32 for t in state["adapter"].values())
