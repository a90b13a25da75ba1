"""A realistic instruction set for benchmarks, generated deterministically: lengths vary
like Alpaca's (many short rows, a long tail), about a third of rows carry an input."""

import random

TOPICS = ["invoices", "shipping delays", "password resets", "warranty claims", "refund policy", "account upgrades",
          "data export", "printer setup", "VPN access", "meeting notes", "holiday requests", "expense reports"]
VERBS = ["Explain", "Summarise", "List the steps for", "Write a short reply about", "Give three tips on", "Describe"]
WORDS = ("the customer asked again about the order and wants a clear answer with dates amounts and next steps "
         "so please check the account history before replying and keep the tone friendly and short").split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def instruction_records(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        answer_words = min(int(rng.lognormvariate(3.4, 0.8)) + 3, 400)
        records.append({
            "instruction": f"{rng.choice(VERBS)} {rng.choice(TOPICS)}.",
            "input": _sentence(rng, rng.randint(5, 40)) if rng.random() < 0.35 else "",
            "output": " ".join(_sentence(rng, 12) for _ in range(max(1, answer_words // 12))),
        })
    return records
