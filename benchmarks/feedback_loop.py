"""Does Train on feedback teach an adapter what its rater likes, and does DPO learn a preference dataset?

    .venv/bin/python -m benchmarks.feedback_loop [--home DIR]

(a) The loop. An adapter is trained (SFT) on support answers of a made-up shop, generated here. A
scripted rater with a checkable taste (answers that end with "Hope this helps!") and an expert's
eye (an answer should name the detail the shop's rule turns on) then chats with it as the Chat tab
does: two sampled answers per message and a vote through studio.feedback.items.vote (the sign-off first,
then the right detail) and, when it likes neither, a correction of the one it voted down through
studio.feedback.items.correct (the rule, then the sign-off). Train on feedback
(jobs.control.submit_feedback_training) queues its jobs, run here through the worker's recipe
(jobs.run.run_job). On held-out questions: how often the old and the new adapter's greedy answers
end with the sign-off and name the right detail, the blind win rate of new over old by the same
rater (sides drawn at random, a tie half a win), and the validation loss on the instruction data.

(b) Preference accuracy. A preference dataset generated here (route an IT ticket to its team: the
right team chosen, the other one rejected) trains a fresh LoRA adapter with DPO through the same
recipe. The two teams have made-up names (Kestrel: network, Basalt: hardware), so the base model
cannot know the answer. On held-out pairs (tickets no training pair holds), the share where the model gives the
chosen answer a higher log-probability than the rejected one, absolute (not relative to the reference).

Everything is generated deterministically (seeded) and nothing is copied from anywhere.
"""

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

SIGN_OFF = "Hope this helps!"
SHOP_FACTS = {  # topic: (the one sentence that answers it, the detail a right answer names)
    "returns": ("Brightfold takes returns within 45 days if you use the orange label from the box.", "45 days"),
    "shipping to Norway": ("Parcels to Norway leave on Tuesdays and arrive within six working days.", "Tuesday"),
    "gift cards": ("Gift cards are valid for three years and can be split across several orders.", "three years"),
    "the loyalty programme": ("Every 10 crowns spent earns one Fold point, and 50 points give a free lamp shade.", "Fold point"),
    "broken deliveries": ("Send a photo of the damage within 48 hours and we ship a replacement at once.", "48 hours"),
    "student discounts": ("Students get 12 percent off after checking their card through the Brightfold app.", "12 percent"),
    "payment by invoice": ("Invoices are due within 21 days and cost no extra fee for orders under 300 crowns.", "21 days"),
    "the showroom": ("The showroom on Harbour Street is open from 10 to 18, closed on Mondays.", "Harbour Street"),
    "assembly service": ("Our fitters assemble any furniture for a fixed price of 35 crowns per item.", "35 crowns"),
    "price matching": ("We match a lower price from a Nordic shop within 14 days of your order.", "Nordic"),
    "the warranty": ("All lamps carry a five-year warranty that covers the wiring but not the bulbs.", "five-year"),
    "changing an order": ("An order can be changed until it is packed, usually within two hours.", "two hours"),
    "recycling old lamps": ("Bring old lamps to any Brightfold store and we recycle them for free.", "recycle"),
    "colour samples": ("Fabric colour samples are free, up to six per customer each month.", "six per customer"),
    "express delivery": ("Express delivery costs 9 crowns and reaches most cities the next day.", "9 crowns"),
    "corporate orders": ("Companies ordering over 20 items get a named contact and 30-day invoices.", "named contact"),
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
    """Instruction rows: each training wording of each topic with 0-3 extra sentences (12-60 words)."""
    rng = random.Random(seed)
    rows = []
    for topic, (fact, _) in SHOP_FACTS.items():
        for wording in WORDINGS["train"]:
            rows.append({"instruction": wording.format(t=topic), "input": "",
                         "output": " ".join([fact] + rng.sample(EXTRAS, rng.randint(0, 3)))})
    rng.shuffle(rows)
    return rows


def questions(kind: str) -> list[tuple[str, str]]:
    """(question, topic) for each topic in the wordings of `kind`."""
    return [(wording.format(t=topic), topic) for topic in SHOP_FACTS for wording in WORDINGS[kind]]


# The rater: a taste anyone can check (the sign-off), and an expert's eye for the right detail.

def likes(answer: str) -> bool:
    """The rater's taste: the answer ends with the sign-off."""
    return answer.strip().endswith(SIGN_OFF)


def right(answer: str, topic: str) -> bool:
    """The answer names the detail the shop's rule turns on."""
    return SHOP_FACTS[topic][1].lower() in answer.lower()


def score(answer: str, topic: str) -> int:
    return 2 * likes(answer) + right(answer, topic)


def judge(a: str, b: str, topic: str) -> str:
    """The rater's vote: "a", "b" or "tie"; the sign-off first, then the right detail."""
    return "tie" if score(a, topic) == score(b, topic) else "a" if score(a, topic) > score(b, topic) else "b"


def rewrite(topic: str) -> str:
    """The answer the rater wanted: the shop's rule, then the sign-off."""
    return f"{SHOP_FACTS[topic][0]} {SIGN_OFF}"


def collect_feedback(store, server, choice, seed: int = 0) -> list[str]:
    """The rater's chat session with the old adapter: a vote on two sampled answers per message and, when it likes
    neither, a correction of the one it voted down. Returns the items' refs."""
    from studio.chat.server import GenerationSettings
    from studio.feedback.items import Answered, correct, vote

    refs = []
    for number, (question, topic) in enumerate(questions("chat")):
        turns = [{"role": "user", "content": question}]
        sampled = [GenerationSettings(temperature=0.8, top_p=0.95, max_new_tokens=MAX_NEW_TOKENS, seed=seed + 2 * number + side)
                   for side in (0, 1)]
        a, b = (Answered(choice.key, choice.label, turns, server.answer(choice, turns, g).text) for g in sampled)
        winner = judge(a.answer, b.answer, topic)
        refs.append(f"vote:{vote(store, a, b, winner, {'temperature': 0.8, 'top_p': 0.95, 'seeds': [s.seed for s in sampled]})}")
        worse = b if winner == "a" else a
        if not likes(a.answer) and not likes(b.answer):
            refs.append(f"correction:{correct(store, worse, rewrite(topic), {'seed': sampled[0].seed})}")
    return refs


def blind_win_rate(new: list[str], old: list[str], topics: list[str], seed: int = 0) -> float:
    """New over old by the rater, sides drawn as the Chat tab's blind A/B draws them; a tie is half a win."""
    from studio.feedback.items import swapped_sides

    won = 0.0
    for number, (mine, theirs, topic) in enumerate(zip(new, old, topics)):
        flipped = swapped_sides(seed, number)
        vote = judge(theirs, mine, topic) if flipped else judge(mine, theirs, topic)
        won += 0.5 if vote == "tie" else float(vote == ("b" if flipped else "a"))
    return won / len(new)


def measure(settings, adapter, dataset, prompts: list[str]) -> tuple[list[str], float]:
    """The adapter's greedy answers to `prompts` (as the Chat tab prompts it, answered in batches) and its loss per
    answer token on the instruction dataset's validation rows."""
    from peft import PeftModel

    from studio.data.held_out import validation_records
    from studio.data.prompts import build_prompt
    from studio.data.prompts import encode, get_template, render
    from studio.device import pick_device
    from studio.evaluate.measure import mean_loss
    from studio.models.catalog import load_base_model, load_tokenizer, resolve_model
    from studio.models.generate import greedy_batch

    base_dir = resolve_model("bundled", settings.models_dir)
    tokenizer = load_tokenizer(base_dir)
    rows = encode([render(r, get_template(dataset.template), tokenizer) for r in validation_records(dataset)], tokenizer, 256)
    model = PeftModel.from_pretrained(load_base_model(base_dir, quantize_4bit=False, device=pick_device()), str(adapter.path)).eval()
    rendered = [build_prompt([{"role": "user", "content": p}], dataset.template, tokenizer) for p in prompts]
    answers = greedy_batch(model, tokenizer, rendered, [MAX_NEW_TOKENS] * len(prompts))
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers], mean_loss(model, rows)


def train(settings, store, dataset, spec: dict, name: str):
    """One training job through the recipe the worker runs; returns its adapter."""
    from studio.train.spec import TrainSpec

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
    from studio.adapters.lineage import lineage
    from studio.chat.server import ModelServer, choose
    from studio.data.instructions import inspect_file, save_dataset

    path = settings.home / "shop.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in shop_rows()))
    dataset = save_dataset(store, settings.datasets_dir, inspect_file(path, tokenizer, max_bytes=2**24, template="chat"),
                           name="shop answers", validation_fraction=0.1)
    started = time.monotonic()
    old = train(settings, store, dataset, {"epochs": 3, "batch_size": 8, "learning_rate": 1e-3, "max_length": 160,
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
    held_out, topics = zip(*questions("held_out"))
    old_answers, old_loss = measure(settings, old, dataset, list(held_out))
    new_answers, new_loss = measure(settings, new, dataset, list(held_out))
    return {"rows": dataset.rows, "sft_steps": old.summary["steps"], "sft_minutes": sft_minutes, "chat_minutes": chat_minutes,
            "votes": sum(r.startswith("vote:") for r in refs), "corrections": sum(r.startswith("correction:") for r in refs),
            "pairs": store.dataset(jobs[-1].dataset_id).rows, "jobs": [f"{j.name} ({j.spec['objective']})" for j in jobs],
            "feedback_minutes": feedback_minutes, "lineage": lineage(store, new), "held_out": len(held_out),
            "old_likes": sum(map(likes, old_answers)) / len(held_out), "new_likes": sum(map(likes, new_answers)) / len(held_out),
            "old_right": sum(map(right, old_answers, topics)) / len(held_out), "new_right": sum(map(right, new_answers, topics)) / len(held_out),
            "blind_win_rate": blind_win_rate(new_answers, old_answers, topics),
            "old_loss": old_loss, "new_loss": new_loss,
            "example_old": old_answers[0], "example_new": new_answers[0]}


# (b) preference accuracy

# Two teams with made-up names, so the base model cannot know which one a ticket goes to.
ROUTES = {"Kestrel": "network", "Basalt": "hardware"}


def ticket_pairs(seed: int = 15) -> tuple[list[dict], list[dict]]:
    """Tickets routed to their made-up team (chosen) or to the other one (rejected): 64 training pairs and 40 held
    out whose ticket text no training pair holds."""
    from benchmarks.quality import PRIORITY, SIGN_OFFS, TEAMS

    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < 104:
        team = rng.choice(list(ROUTES))
        text = rng.choice([p for ps in PRIORITY.values() for p in ps]) + rng.choice(TEAMS[ROUTES[team]]) + "." + rng.choice(SIGN_OFFS)
        if text in seen:
            continue
        seen.add(text)
        other = next(t for t in ROUTES if t != team)
        rows.append({"prompt": f"Which team handles this IT ticket, Kestrel or Basalt? Answer with the team.\n\n{text}",
                     "chosen": f"The {team} team.", "rejected": f"The {other} team."})
    return rows[:64], rows[64:]


def preference_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """Share of pairs whose chosen answer the model finds likelier than the rejected one (summed log-probabilities)."""
    import torch

    from studio.data.prompts import build_prompt

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

    from studio.data.instructions import store_records
    from studio.device import pick_device
    from studio.models.catalog import load_base_model, resolve_model

    train_pairs, held_out = ticket_pairs()
    records = [{"prompt": [{"role": "user", "content": p["prompt"]}], "chosen": p["chosen"], "rejected": p["rejected"]} for p in train_pairs]
    dataset = store_records(store, settings.datasets_dir, records, name="ticket pairs", format="jsonl", shape="preference", mapping={},
                            template="chat", validation_fraction=0.0, split_seed=42, source_file="benchmarks.feedback_loop")
    base = load_base_model(resolve_model("bundled", settings.models_dir), quantize_4bit=False, device=pick_device()).eval()
    before = preference_accuracy(base, tokenizer, held_out)
    print(f"Preference accuracy before DPO: {before:.0%}", flush=True)
    started = time.monotonic()
    adapter = train(settings, store, dataset, {"objective": "dpo", "epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "beta": 0.1,
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
    from studio.models.catalog import load_tokenizer, resolve_model
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
    rows = [(f"(a) held-out answers with the rater's sign-off ({loop['held_out']} questions)", f"{loop['old_likes']:.0%}", f"{loop['new_likes']:.0%}"),
            ("(a) held-out answers naming the right detail", f"{loop['old_right']:.0%}", f"{loop['new_right']:.0%}"),
            ("(a) blind win rate of new over old, same rater (tie = half)", "", f"{loop['blind_win_rate']:.0%}"),
            ("(a) validation loss on the instruction data", f"{loop['old_loss']:.3f}", f"{loop['new_loss']:.3f}"),
            (f"(b) preference accuracy, {pairs['held_out']} held-out pairs (absolute log-prob)", f"{pairs['before']:.0%}", f"{pairs['after']:.0%}")]
    print(f"{'measure':<66} {'old/before':>10} {'new/after':>10}")
    for measure, before, after in rows:
        print(f"{measure:<66} {before:>10} {after:>10}")
    print(f"\nOld: {loop['example_old']!r}\nNew: {loop['example_new']!r}")


if __name__ == "__main__":
    main()
