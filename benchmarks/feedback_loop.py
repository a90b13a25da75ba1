"""Does Train on feedback teach an adapter what its rater likes, and does DPO learn a preference dataset?

    .venv/bin/python -m benchmarks.feedback_loop [--home DIR]

(a) The loop. An adapter is trained (SFT) on support answers of a made-up shop, generated here. A
scripted rater with a checkable taste (answers of at most 25 words that end with "Hope this
helps!") then chats with it as the Chat tab does: two sampled answers per message, a vote through
studio.feedback.vote, and on every other message a correction through studio.feedback.correct of
an answer it does not like. Train on feedback (jobs.control.submit_feedback_training) queues its
jobs, run here through the worker's recipe (jobs.run.run_job). On held-out questions: how often the
old and the new adapter's greedy answers match the taste, the blind win rate of new over old by the
same rater (sides drawn at random, a tie half a win), and the validation loss on the instruction data.

(b) Preference accuracy. A preference dataset generated here (route an IT ticket to its team: the
right team chosen, a wrong one rejected) trains a fresh LoRA adapter with DPO through the same
recipe. On held-out pairs (tickets no training pair holds), the share where the model gives the
chosen answer a higher log-probability than the rejected one, absolute (not relative to the reference).

Everything is generated deterministically (seeded) and nothing is copied from anywhere.
"""

import argparse
import json
import os
import platform
import random
import re
import tempfile
import time
from pathlib import Path

SIGN_OFF = "Hope this helps!"
MAX_WORDS = 25
SHOP_FACTS = {  # topic: the one sentence that answers it
    "returns": "Brightfold takes returns within 45 days if you use the orange label from the box.",
    "shipping to Norway": "Parcels to Norway leave on Tuesdays and arrive within six working days.",
    "gift cards": "Gift cards are valid for three years and can be split across several orders.",
    "the loyalty programme": "Every 10 crowns spent earns one Fold point, and 50 points give a free lamp shade.",
    "broken deliveries": "Send a photo of the damage within 48 hours and we ship a replacement at once.",
    "student discounts": "Students get 12 percent off after checking their card through the Brightfold app.",
    "payment by invoice": "Invoices are due within 21 days and cost no extra fee for orders under 300 crowns.",
    "the showroom": "The showroom on Harbour Street is open from 10 to 18, closed on Mondays.",
    "assembly service": "Our fitters assemble any furniture for a fixed price of 35 crowns per item.",
    "price matching": "We match a lower price from a Nordic shop within 14 days of your order.",
    "the warranty": "All lamps carry a five-year warranty that covers the wiring but not the bulbs.",
    "changing an order": "An order can be changed until it is packed, usually within two hours.",
    "recycling old lamps": "Bring old lamps to any Brightfold store and we recycle them for free.",
    "colour samples": "Fabric colour samples are free, up to six per customer each month.",
    "express delivery": "Express delivery costs 9 crowns and reaches most cities the next day.",
    "corporate orders": "Companies ordering over 20 items get a named contact and 30-day invoices.",
}
EXTRAS = ["Our team answers every email within two working days.", "You can follow each step on the order page at any time.",
          "Please keep your order number at hand when you contact us.", "Many customers find the help pages useful for this as well.",
          "We are sorry for any trouble this may have caused you.", "Rules can change during sales weeks, so check the page then.",
          "Our chat is open every day from eight in the morning.", "Thank you for shopping with Brightfold and for your patience."]
WORDINGS = {  # how a customer asks: three for training, one for the rater's chat, one held out
    "train": ["How does {t} work?", "Can you tell me about {t}?", "What are the rules for {t}?"],
    "chat": ["What should I know about {t}?"],
    "held_out": ["Quick question on {t}, please explain."],
}
MAX_NEW_TOKENS = 56  # answers beyond it are cut: longer than the rater likes anyway


def shop_rows(seed: int = 7) -> list[dict]:
    """Instruction rows: each training wording of each topic, twice, with 0-3 extra sentences (12-60 words)."""
    rng = random.Random(seed)
    rows = []
    for topic, fact in SHOP_FACTS.items():
        for wording in WORDINGS["train"]:
            for _ in range(2):
                rows.append({"instruction": wording.format(t=topic), "input": "",
                             "output": " ".join([fact] + rng.sample(EXTRAS, rng.randint(0, 3)))})
    rng.shuffle(rows)
    return rows


def questions(kind: str) -> list[str]:
    return [wording.format(t=topic) for topic in SHOP_FACTS for wording in WORDINGS[kind]]


# The rater: a taste anyone can check.

def words(answer: str) -> int:
    return len(answer.split())


def likes(answer: str) -> bool:
    """At most MAX_WORDS words, ending with the sign-off."""
    return answer.strip().endswith(SIGN_OFF) and words(answer) <= MAX_WORDS


def score(answer: str) -> int:
    return 2 * answer.strip().endswith(SIGN_OFF) + (words(answer) <= MAX_WORDS)


def judge(a: str, b: str) -> str:
    """The rater's vote: "a", "b" or "tie"."""
    return "tie" if score(a) == score(b) else "a" if score(a) > score(b) else "b"


def rewrite(answer: str) -> str:
    """The answer the rater wanted: the first sentence, then the sign-off."""
    first = re.split(r"(?<=[.!?])\s", answer.strip(), maxsplit=1)[0]
    return " ".join(first.split()[:MAX_WORDS - len(SIGN_OFF.split())]) + " " + SIGN_OFF


def collect_feedback(store, server, choice, seed: int = 0) -> list[str]:
    """The rater's chat session with the old adapter: a vote on two sampled answers per message and, on every
    other message, a correction of the answer it likes least when it likes neither. Returns the items' refs."""
    from studio.chat import GenerationSettings
    from studio.feedback import Answered, correct, vote

    refs = []
    for number, question in enumerate(questions("chat")):
        turns = [{"role": "user", "content": question}]
        sampled = [GenerationSettings(temperature=0.8, top_p=0.95, max_new_tokens=MAX_NEW_TOKENS, seed=seed + 2 * number + side)
                   for side in (0, 1)]
        a, b = (Answered(choice.key, choice.label, turns, server.answer(choice, turns, g).text) for g in sampled)
        winner = judge(a.answer, b.answer)
        refs.append(f"vote:{vote(store, a, b, winner, {'temperature': 0.8, 'top_p': 0.95, 'seeds': [s.seed for s in sampled]})}")
        worse = b if winner == "a" else a
        if number % 2 == 0 and not likes(worse.answer):
            refs.append(f"correction:{correct(store, worse, rewrite(worse.answer), {'seed': sampled[0].seed})}")
    return refs


def blind_win_rate(new: list[str], old: list[str], seed: int = 0) -> float:
    """New over old by the rater, sides drawn as the Chat tab's blind A/B draws them; a tie is half a win."""
    from studio.feedback import swapped_sides

    won = 0.0
    for number, (mine, theirs) in enumerate(zip(new, old)):
        flipped = swapped_sides(seed, number)
        vote = judge(theirs, mine) if flipped else judge(mine, theirs)
        won += 0.5 if vote == "tie" else float(vote == ("b" if flipped else "a"))
    return won / len(new)


def measure(settings, adapter, dataset, prompts: list[str]) -> tuple[list[str], float]:
    """The adapter's greedy answers to `prompts` (as the Chat tab prompts it, answered in batches) and its loss per
    answer token on the instruction dataset's validation rows."""
    from peft import PeftModel

    from studio.chat import build_prompt
    from studio.device import pick_device
    from studio.evaluate import greedy_batch, mean_loss, validation_records
    from studio.models import load_base_model, load_tokenizer, resolve_model
    from studio.prompts import encode, get_template, render

    base_dir = resolve_model("bundled", settings.models_dir)
    tokenizer = load_tokenizer(base_dir)
    rows = encode([render(r, get_template(dataset.template), tokenizer) for r in validation_records(dataset)], tokenizer, 256)
    model = PeftModel.from_pretrained(load_base_model(base_dir, quantize_4bit=False, device=pick_device()), str(adapter.path)).eval()
    rendered = [build_prompt([{"role": "user", "content": p}], dataset.template, tokenizer) for p in prompts]
    answers = greedy_batch(model, tokenizer, rendered, [MAX_NEW_TOKENS] * len(prompts))
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers], mean_loss(model, rows)


def train(settings, store, dataset, spec: dict, name: str):
    """One training job through the recipe the worker runs; returns its adapter."""
    from studio.spec import TrainSpec

    job = store.add_job(kind="train", name=name, dataset_id=dataset.id, base_model="bundled", spec=TrainSpec.from_dict(spec).to_json())
    return run_to_adapter(settings, store, job.id)


def run_to_adapter(settings, store, job_id: int):
    """Run a recorded job through the worker's recipe; returns its adapter."""
    from jobs.run import run_job

    if run_job(settings, store, job_id) is None:
        raise SystemExit(f"job {job_id} failed: {store.job(job_id).error}")
    return store.adapter(store.job(job_id).adapter_id)


def the_loop(settings, store, tokenizer) -> dict:
    from jobs.control import submit_feedback_training
    from jobs.tasks import release_waiting
    from studio.chat import ModelServer, choose
    from studio.data import inspect_file, save_dataset
    from studio.lineage import lineage

    path = settings.home / "shop.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in shop_rows()))
    dataset = save_dataset(store, settings.datasets_dir, inspect_file(path, tokenizer, max_bytes=2**24, template="chat"),
                           name="shop answers", validation_fraction=0.1)
    started = time.monotonic()
    old = train(settings, store, dataset, {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "max_length": 160,
                                           "warmup_ratio": 0.0, "save_steps": 1000}, "shop")
    sft_minutes = (time.monotonic() - started) / 60
    print(f"SFT adapter trained: {old.summary['steps']} steps in {sft_minutes:.1f} min", flush=True)
    server = ModelServer(settings.chat_memory_mb)
    started = time.monotonic()
    refs = collect_feedback(store, server, choose(f"adapter:{old.id}", settings, store))
    chat_minutes = (time.monotonic() - started) / 60
    print(f"The rater's chat: {len(refs)} votes and corrections in {chat_minutes:.1f} min", flush=True)
    started = time.monotonic()
    jobs = submit_feedback_training(store, settings.datasets_dir, old.id, refs)
    for job in jobs:
        new = run_to_adapter(settings, store, job.id)
        release_waiting(store, job.id)  # what the worker does after each job: the DPO job continues the corrections' adapter
    feedback_minutes = (time.monotonic() - started) / 60
    print(f"Train on feedback: {len(jobs)} jobs in {feedback_minutes:.1f} min", flush=True)
    held_out = questions("held_out")
    old_answers, old_loss = measure(settings, old, dataset, held_out)
    new_answers, new_loss = measure(settings, new, dataset, held_out)
    return {"rows": dataset.rows, "sft_steps": old.summary["steps"], "sft_minutes": sft_minutes, "chat_minutes": chat_minutes,
            "votes": sum(r.startswith("vote:") for r in refs), "corrections": sum(r.startswith("correction:") for r in refs),
            "pairs": store.dataset(jobs[-1].dataset_id).rows, "jobs": [f"{j.name} ({j.spec['objective']})" for j in jobs],
            "feedback_minutes": feedback_minutes, "lineage": lineage(store, new), "held_out": len(held_out),
            "old_likes": sum(map(likes, old_answers)) / len(held_out), "new_likes": sum(map(likes, new_answers)) / len(held_out),
            "blind_win_rate": blind_win_rate(new_answers, old_answers),
            "old_loss": old_loss, "new_loss": new_loss,
            "example_old": old_answers[0], "example_new": new_answers[0]}


# (b) preference accuracy

def ticket_pairs(seed: int = 15) -> tuple[list[dict], list[dict]]:
    """Tickets routed to their team (chosen) or to a wrong one (rejected): 160 training pairs and 40 held out
    whose ticket text no training pair holds."""
    from benchmarks.quality import PRIORITY, SIGN_OFFS, TEAMS

    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < 200:
        team = rng.choice(list(TEAMS))
        text = rng.choice([p for ps in PRIORITY.values() for p in ps]) + rng.choice(TEAMS[team]) + "." + rng.choice(SIGN_OFFS)
        if text in seen:
            continue
        seen.add(text)
        wrong = rng.choice([t for t in TEAMS if t != team])
        rows.append({"prompt": f"Which team handles this IT ticket? Answer with the team.\n\n{text}",
                     "chosen": f"The {team} team.", "rejected": f"The {wrong} team."})
    return rows[:160], rows[160:]


def preference_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """Share of pairs whose chosen answer the model finds likelier than the rejected one (summed log-probabilities)."""
    import torch

    from studio.chat import build_prompt

    def logp(prompt_ids: list[int], answer: str) -> float:
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
        return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(answer_ids)[:, None]).sum())

    right = 0
    for pair in pairs:
        prompt = tokenizer(build_prompt([{"role": "user", "content": pair["prompt"]}], "chat", tokenizer), add_special_tokens=False)["input_ids"]
        right += logp(prompt, pair["chosen"]) > logp(prompt, pair["rejected"])
    return right / len(pairs)


def preference_run(settings, store, tokenizer) -> dict:
    from peft import PeftModel

    from studio.data import store_records
    from studio.device import pick_device
    from studio.models import load_base_model, resolve_model

    train_pairs, held_out = ticket_pairs()
    records = [{"prompt": [{"role": "user", "content": p["prompt"]}], "chosen": p["chosen"], "rejected": p["rejected"]} for p in train_pairs]
    dataset = store_records(store, settings.datasets_dir, records, name="ticket pairs", format="jsonl", shape="preference", mapping={},
                            template="chat", validation_fraction=0.0, split_seed=42, source_file="benchmarks.feedback_loop")
    base = load_base_model(resolve_model("bundled", settings.models_dir), quantize_4bit=False, device=pick_device()).eval()
    before = preference_accuracy(base, tokenizer, held_out)
    print(f"Preference accuracy before DPO: {before:.0%}", flush=True)
    started = time.monotonic()
    adapter = train(settings, store, dataset, {"objective": "dpo", "epochs": 1, "batch_size": 8, "learning_rate": 8e-4, "beta": 0.1,
                                               "max_length": 128, "warmup_ratio": 0.0, "save_steps": 1000}, "ticket-dpo")
    minutes = (time.monotonic() - started) / 60
    after = preference_accuracy(PeftModel.from_pretrained(base, str(adapter.path)).eval(), tokenizer, held_out)
    return {"pairs": len(train_pairs), "held_out": len(held_out), "steps": adapter.summary["steps"], "minutes": minutes,
            "before": before, "after": after}


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only, {torch.get_num_threads()} threads"
    return f"{cpu}, {os.cpu_count()} cores, {device}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="studio home to use (default: a new temporary folder)")
    parser.add_argument("--models-dir", type=Path, help="prepared models folder to share (default: under the home)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="feedback-loop-"))
    os.environ["STUDIO_HOME"] = str(home)  # before jobs.queue opens its queue file: this run's own
    if args.models_dir:
        os.environ["STUDIO_MODELS_DIR"] = str(args.models_dir)
    from jobs.run import quiet_libraries
    from studio.models import load_tokenizer, resolve_model
    from studio.settings import load_settings
    from studio.store import Store

    quiet_libraries()
    settings = load_settings()
    store = Store(settings.db_path)
    tokenizer = load_tokenizer(resolve_model("bundled", settings.models_dir))
    started = time.monotonic()
    loop = the_loop(settings, store, tokenizer)
    print(json.dumps(loop), flush=True)
    pairs = preference_run(settings, store, tokenizer)
    print(json.dumps(pairs), flush=True)
    print(f"\nMachine: {machine()}; whole run {(time.monotonic() - started) / 60:.1f} min")
    print(f"(a) SFT adapter: {loop['rows']} rows, {loop['sft_steps']} steps, {loop['sft_minutes']:.1f} min. Rater's chat: {loop['votes']} votes, "
          f"{loop['corrections']} corrections ({loop['chat_minutes']:.1f} min). Train on feedback: {' then '.join(loop['jobs'])}, "
          f"{loop['pairs']} pairs, {loop['feedback_minutes']:.1f} min. New adapter: {loop['lineage']}.")
    print(f"(b) DPO from the base on {pairs['pairs']} ticket pairs: {pairs['steps']} steps, {pairs['minutes']:.1f} min.\n")
    rows = [(f"(a) held-out answers the rater likes ({loop['held_out']} questions)", f"{loop['old_likes']:.0%}", f"{loop['new_likes']:.0%}"),
            ("(a) blind win rate of new over old, same rater (tie = half)", "", f"{loop['blind_win_rate']:.0%}"),
            ("(a) validation loss on the instruction data", f"{loop['old_loss']:.3f}", f"{loop['new_loss']:.3f}"),
            (f"(b) preference accuracy, {pairs['held_out']} held-out pairs (absolute log-prob)", f"{pairs['before']:.0%}", f"{pairs['after']:.0%}")]
    print(f"{'measure':<66} {'old/before':>10} {'new/after':>10}")
    for measure, before, after in rows:
        print(f"{measure:<66} {before:>10} {after:>10}")
    print(f"\nOld: {loop['example_old']!r}\nNew: {loop['example_new']!r}")


if __name__ == "__main__":
    main()
