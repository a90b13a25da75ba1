"""The fast training path: answer-only logits, length-grouped batches, tokenised datasets cached by content."""

import shutil

import torch

from studio.train import token_cache
from studio.train.speed.batching import length_grouped_order
from studio.train.trainer import _head_weight_in, answer_loss


def padded_batch(tokenizer) -> dict[str, torch.Tensor]:
    """Two rows of different lengths, padded; the prompt and the padding carry no loss."""
    rows = [("Name a colour.", " Blue, like the sea on a calm day."), ("What is two plus two?", " Four.")]
    encoded = [(tokenizer(p, add_special_tokens=False)["input_ids"], tokenizer(a, add_special_tokens=False)["input_ids"]) for p, a in rows]
    longest = max(len(p) + len(a) for p, a in encoded)
    input_ids = torch.full((2, longest), tokenizer.pad_token_id)
    labels = torch.full((2, longest), -100)
    attention_mask = torch.zeros((2, longest), dtype=torch.long)
    for i, (prompt, answer) in enumerate(encoded):
        n = len(prompt) + len(answer)
        input_ids[i, :n] = torch.tensor(prompt + answer)
        labels[i, len(prompt):n] = torch.tensor(answer)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def test_answer_only_logits_give_the_models_own_loss(lora_model, tokenizer):
    batch = padded_batch(tokenizer)
    with torch.no_grad():
        expected = lora_model(**batch).loss
        loss, count, correct = answer_loss(lora_model, batch)
        top1 = lora_model(**batch).logits[:, :-1].argmax(-1) == batch["labels"][:, 1:]
    assert count == (batch["labels"][:, 1:] != -100).sum() and correct == top1.sum()
    assert abs(loss.item() - expected.item()) < 1e-5


def test_answer_only_logits_give_the_models_own_gradients(lora_model, tokenizer, monkeypatch):
    monkeypatch.setattr("studio.train.trainer.CHUNK", 4)  # several chunks, as a long batch has
    monkeypatch.setattr("studio.train.trainer.SOFTMAX_ROWS", 3)  # and several softmax passes in a chunk
    batch = padded_batch(tokenizer)
    lora_b = [p for name, p in lora_model.named_parameters() if "lora_B" in name]
    lora_b = lora_b[:2] + lora_b[-2:]  # the first layers and the last
    ours = torch.autograd.grad(answer_loss(lora_model, batch, num_items_in_batch=7)[0], lora_b)
    theirs = torch.autograd.grad(lora_model(**batch, num_items_in_batch=7).loss, lora_b)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(ours, theirs))


def test_length_grouped_order_keeps_every_row_and_pads_little():
    generator = torch.Generator().manual_seed(0)
    lengths = [int(x) for x in torch.randint(5, 500, (96,), generator=generator)]
    order = length_grouped_order(lengths, 8, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(96))
    batches = [order[k:k + 8] for k in range(0, 96, 8)]
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the longest batch first: memory runs out at once, or not

    def padding(batches):
        computed = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        return 1 - sum(lengths) / computed

    random_batches = [list(range(k, k + 8)) for k in range(0, 96, 8)]
    assert padding(batches) < 0.15 < 0.3 < padding(random_batches)
    assert order == length_grouped_order(lengths, 8, torch.Generator().manual_seed(1))
    assert order != length_grouped_order(lengths, 8, torch.Generator().manual_seed(2))


def test_token_cache_returns_the_rows_it_saved(tmp_path):
    train = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    validation = [{"input_ids": [9, 10], "labels": [-100, 10]}]
    assert token_cache.load(tmp_path, "key") is None
    token_cache.save(tmp_path, "key", train, validation)
    assert token_cache.load(tmp_path, "key") == (train, validation)
    assert [p.name for p in tmp_path.iterdir()] == ["key.npz"]  # no staging file left behind


def test_token_cache_key_covers_content_tokenizer_and_settings(bundled_dir, tmp_path):
    settings = dict(template="alpaca", max_length=512, responses_only=True, validation_fraction=0.1, split_seed=0)
    key = token_cache.cache_key(bundled_dir, "hash-a", **settings)
    assert key == token_cache.cache_key(bundled_dir, "hash-a", **settings)
    assert key != token_cache.cache_key(bundled_dir, "hash-b", **settings)
    for change in [{"template": "chat"}, {"max_length": 256}, {"responses_only": False}, {"validation_fraction": 0.2}, {"split_seed": 1}]:
        assert key != token_cache.cache_key(bundled_dir, "hash-a", **{**settings, **change})
    other = tmp_path / "other-tokenizer"
    shutil.copytree(bundled_dir, other, ignore=shutil.ignore_patterns("*.safetensors"))
    assert key == token_cache.cache_key(other, "hash-a", **settings)  # the weights do not matter, the tokenizer does
    (other / "tokenizer_config.json").write_text((other / "tokenizer_config.json").read_text() + "\n")
    assert key != token_cache.cache_key(other, "hash-a", **settings)


def test_the_studio_loss_runs_in_the_precision_the_trainer_is_set_to(lora_model, tokenizer, tmp_path):
    """accelerate's bf16 autocast wraps model.forward, which answer_loss goes around: the trainer applies it itself."""
    from datasets import Dataset
    from trl import SFTConfig

    from studio.train.trainer import StudioTrainer

    config = SFTConfig(output_dir=str(tmp_path), bf16=True, use_cpu=True, report_to="none", dataset_kwargs={"skip_prepare_dataset": True})
    rows = Dataset.from_list([{"input_ids": [1, 2], "labels": [1, 2]}])
    trainer = StudioTrainer(model=lora_model, args=config, processing_class=tokenizer, train_dataset=rows)
    produced = []
    hook = lora_model.get_base_model().model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, out: produced.append(out.dtype))
    try:
        trainer.compute_loss(trainer.model, padded_batch(tokenizer))
    finally:
        hook.remove()
    assert produced == [torch.bfloat16]



def test_a_frozen_heads_weight_is_cast_once_and_again_after_it_changes():
    head = torch.nn.Linear(8, 5, bias=False)
    head.weight.requires_grad_(False)  # frozen, as the tied embeddings are under LoRA
    first = _head_weight_in(torch.bfloat16, head)
    assert first.dtype == torch.bfloat16 and _head_weight_in(torch.bfloat16, head) is first  # kept from step to step
    with torch.no_grad():
        head.weight.add_(1.0)  # written to in place (a checkpoint loaded back, say)
    again = _head_weight_in(torch.bfloat16, head)
    assert again is not first and torch.equal(again, head.weight.bfloat16())
    head.weight.requires_grad_(True)  # a trained head: its cast is part of the step's graph
    assert _head_weight_in(torch.bfloat16, head).requires_grad
