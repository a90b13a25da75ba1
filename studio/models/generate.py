"""Greedy answers from a loaded model to rendered prompts: one at a time, or in left-padded batches."""


ANSWER_BATCH = 10  # prompts answered at once: two batches for MAX_ANSWERS, little padding, bounded memory


def greedy_ids(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """The new token ids of the model's greedy answer to an already rendered prompt."""
    import torch

    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=model.device)
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return output[0, ids.shape[1]:].tolist()


def greedy_batch(model, tokenizer, prompts: list[str], limits: list[int], batch_size: int = ANSWER_BATCH) -> list[list[int]]:
    """Greedy answers to many rendered prompts, a batch at a time (left-padded, so every prompt ends
    where generation starts); each answer is cut at its own token limit and after its end-of-sequence token."""
    import torch

    found = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(prompts), batch_size):
            chunk, chunk_limits = prompts[start:start + batch_size], limits[start:start + batch_size]
            batch = tokenizer(chunk, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
            with torch.inference_mode():
                output = model.generate(**batch, max_new_tokens=max(chunk_limits), do_sample=False, pad_token_id=tokenizer.pad_token_id)
            for ids, limit in zip(output[:, batch["input_ids"].shape[1]:].tolist(), chunk_limits):
                ids = ids[:limit]
                found.append(ids[:ids.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in ids else ids)
    finally:
        tokenizer.padding_side = side
    return found
