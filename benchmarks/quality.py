"""Does an adapter trained with the default (Auto) plan learn? Three generated tasks of the kinds
domain teams bring, each scored on a held-out test file the run never saw.

    .venv/bin/python -m benchmarks.quality [--tasks tickets,dates,clinic] [--home DIR] [--set lora_dropout=0.1 ...]

- tickets: route an IT ticket, answer "team: X; priority: Y" (a fixed-format classification)
- dates: write a date given in words in ISO 8601 (an exact transformation)
- clinic: a made-up clinic's rules, asked in words no training row uses (new facts)

The data is generated here, deterministically (seeded), and is not copied from anywhere. Each task
trains through the studio's own job recipe with the Auto plan and no other setting, then is
evaluated and judged as the studio does after every training job, on its test file.
"""

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

TEAMS = {
    "network": ["the VPN drops", "wifi on floor 3 is down", "cannot reach the intranet", "the office internet is slow", "DNS fails on my laptop"],
    "accounts": ["I am locked out of my account", "password reset link expired", "need access to the finance share", "my login asks for MFA twice", "new starter needs an account"],
    "hardware": ["my laptop screen flickers", "the printer jams", "keyboard keys are stuck", "docking station not detected", "laptop battery swells"],
    "software": ["Excel crashes on open", "the CRM shows an error 500", "Outlook will not sync", "cannot install the PDF reader", "Teams has no sound"],
    "security": ["I clicked a phishing link", "a stranger tailgated into the server room", "my laptop was stolen", "suspicious login from abroad", "USB stick found in the car park"],
}
PRIORITY = {"high": ["Urgent: ", "Blocking our whole team: ", "ASAP please, ", "Critical - "],
            "medium": ["When you can today, ", "Fairly soon please: ", "This week: "],
            "low": ["No rush: ", "Whenever convenient, ", "Low priority - ", "Just so you know, "]}
SIGN_OFFS = ["", " Thanks.", " Regards, Sam.", " Cheers", " - sent from my phone", " Thank you!"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def tickets(rng: random.Random, count: int) -> list[dict]:
    rows = []
    for _ in range(count):
        team, priority = rng.choice(list(TEAMS)), rng.choice(list(PRIORITY))
        text = rng.choice(PRIORITY[priority]) + rng.choice(TEAMS[team]) + "." + rng.choice(SIGN_OFFS)
        rows.append({"instruction": "Route this IT ticket. Answer exactly as 'team: TEAM; priority: PRIORITY'.", "input": text,
                     "output": f"team: {team}; priority: {priority}"})
    return rows


def _ordinal(day: int) -> str:
    return f"{day}{'th' if 11 <= day % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"


def dates(rng: random.Random, count: int) -> list[dict]:
    rows = []
    for _ in range(count):
        year, month, day = rng.randint(1950, 2049), rng.randint(1, 12), rng.randint(1, 28)
        name = MONTHS[month - 1]
        text = rng.choice([f"{name} {day}, {year}", f"{day} {name} {year}", f"the {_ordinal(day)} of {name}, {year}",
                           f"{name[:3]} {day} {year}", f"{_ordinal(day)} {name} {year}"])
        rows.append({"instruction": "Write this date in ISO 8601 format (YYYY-MM-DD).", "input": text,
                     "output": f"{year:04d}-{month:02d}-{day:02d}"})
    return rows


# (questions: three for training, the fourth worded differently for the test; the answer)
CLINIC = [
    (["When does Larkspur Clinic open on weekdays?", "What time do you open Monday to Friday?", "What are the weekday opening hours?",
      "At what hour can I come in on a Tuesday morning?"], "On weekdays Larkspur Clinic opens at 7:40 and closes at 18:20."),
    (["Is the clinic open on Saturdays?", "Can I visit on a Saturday?", "What are the Saturday hours?",
      "Do you see patients at the weekend on Saturday?"], "On Saturdays the clinic is open from 9:15 to 12:45."),
    (["Is the clinic open on Sundays?", "Can I come in on Sunday?", "Do you work on Sundays?",
      "Will anyone be there if I turn up on a Sunday?"], "The clinic is closed on Sundays; call the Heron Line on 0800 417 226."),
    (["How much is a standard consultation?", "What does a normal appointment cost?", "What is the fee for a consultation?",
      "How much will I pay to see a doctor?"], "A standard consultation costs 46 crowns."),
    (["How do I book an appointment?", "What is the way to make an appointment?", "Can I book a visit online?",
      "Where do I go to get an appointment slot?"], "Book through the Larkspur app or at the front desk."),
    (["How late can I cancel an appointment?", "What is the cancellation deadline?", "When must I cancel by?",
      "Until when is cancelling free?"], "Cancel at least 36 hours before the appointment."),
    (["What happens if I miss an appointment?", "Is there a fee for not showing up?", "Do you charge for missed visits?",
      "What do I owe if I forget to come?"], "A missed appointment costs a fee of 18 crowns."),
    (["Where can I park?", "Is there parking at the clinic?", "Where should I leave my car?",
      "Can I drive there and park nearby?"], "Park in the Quarry Lane car park behind the clinic."),
    (["Can I bring my dog?", "Are pets allowed inside?", "May animals come into the clinic?",
      "Is it fine to come with my cat?"], "Only assistance dogs may enter the clinic."),
    (["How do I get a repeat prescription?", "How can I renew my prescription?", "What is the process for repeat medicine?",
      "I need more of my tablets, what do I do?"], "Request repeat prescriptions by the Larkspur app; they are ready in 3 days."),
    (["Do you offer flu vaccinations?", "Can I get a flu jab here?", "When are flu shots given?",
      "Is there a flu vaccine clinic?"], "Flu jabs are given on Wednesday afternoons from October to December."),
    (["Who is the head doctor?", "Who leads the clinic?", "Who is the senior physician?",
      "Which doctor is in charge?"], "The head doctor is Dr. Ilse Vantongeren."),
    (["Is there a pharmacy in the building?", "Can I collect medicine on site?", "Do you have a pharmacy?",
      "Is there somewhere inside to pick up drugs?"], "The Fennel Pharmacy is on the ground floor."),
    (["What should I bring to my first visit?", "What do new patients need to bring?", "Which documents do I need for registration?",
      "What papers should I have with me the first time?"], "Bring your Larkspur card and a list of your medicines."),
    (["Can children be seen at the clinic?", "Do you treat kids?", "Is there a children's doctor?",
      "Will you see my young son?"], "Children are seen by Dr. Pavel Ostrander on Thursday mornings."),
    (["How do I get my test results?", "Where can I see my blood test results?", "When will my results be ready?",
      "How am I told about lab results?"], "Test results appear in the Larkspur app within 5 working days."),
    (["Is there wheelchair access?", "Can wheelchair users get in?", "Is the building accessible?",
      "Is there a ramp for my wheelchair?"], "The side entrance on Mill Street has a ramp and a lift."),
    (["What is the phone number?", "How can I call the clinic?", "Which number do I ring?",
      "What number should I dial to reach reception?"], "Call reception on 0800 417 300."),
    (["Do you do home visits?", "Can a doctor come to my house?", "Are house calls possible?",
      "Will a doctor visit me at home?"], "Home visits are for patients over 80, booked before 10:00."),
    (["Is there Wi-Fi in the waiting room?", "Can I use the internet while I wait?", "What is the Wi-Fi password?",
      "How do I get online in the waiting area?"], "Guest Wi-Fi is Larkspur-Guest with the password heron42."),
    (["Do you offer blood tests?", "Can I have blood taken here?", "When is the blood test service?",
      "Is there a time for taking blood samples?"], "Blood is taken from 7:45 to 9:30 on weekdays, without appointment."),
    (["Can I get a sick note?", "How do I get a doctor's note for work?", "Do you write sick notes?",
      "My employer needs a note, can you give one?"], "Sick notes cost 12 crowns and are issued after a consultation."),
    (["Do you have an out-of-hours service?", "Who do I call at night?", "What if I need help after closing?",
      "Where do I turn in the evening when you are shut?"], "After hours call the Heron Line on 0800 417 226."),
    (["Is there a translator service?", "Can I get an interpreter?", "Do you provide interpreters?",
      "I do not speak the language well, can someone help?"], "Ask for an interpreter when booking; it is free."),
]


def clinic(rng: random.Random) -> tuple[list[dict], list[dict]]:
    train, test = [], []
    for questions, answer in CLINIC:
        train += [{"instruction": q, "input": "", "output": answer} for q in questions[:3]]
        test.append({"instruction": questions[3], "input": "", "output": answer})
    rng.shuffle(train)
    return train, test


def task_data(name: str) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out test rows), the same every time."""
    rng = random.Random(14)
    if name == "clinic":
        return clinic(rng)
    rows = {"tickets": tickets, "dates": dates}[name](rng, 440)
    train, test = rows[:400], rows[400:]
    seen = {(r["instruction"], r["input"]) for r in train}
    return train, [r for r in test if (r["instruction"], r["input"]) not in seen][:20]


def run_task(name: str, settings, store, tokenizer, chosen: dict) -> dict:
    from jobs.run import run_job
    from studio.data.instructions import inspect_file, save_dataset
    from studio.device import pick_device
    from studio.evaluate.measure import evaluate_adapter
    from studio.evaluate.verdict import verdict_for
    from studio.models.catalog import resolve_model
    from studio.train.plan import dataset_stats, make_plan, measured_tokens_per_second

    train, test = task_data(name)
    folder = settings.home / "bench-data"
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for kind, rows in (("train", train), ("test", test)):
        path = folder / f"{name}-{kind}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        report = inspect_file(path, tokenizer, max_bytes=2**24)
        saved.append(save_dataset(store, settings.datasets_dir, report, name=f"{name}-{kind}", validation_fraction=0.05 if kind == "train" else 0.0))
    dataset, test_set = saved
    base_dir = resolve_model("bundled", settings.models_dir)
    plan = make_plan(dataset_stats(dataset, base_dir), "Auto", chosen, pick_device().name, base_dir, measured_tokens_per_second(store, "bundled"))
    print(plan.describe().replace("**", ""), flush=True)
    job = store.add_job(kind="train", name=f"{name}-auto", dataset_id=dataset.id, base_model="bundled", spec=plan.spec.to_json())
    store.update_job(job.id, test_dataset_id=test_set.id)
    result = run_job(settings, store, job.id)
    if result is None:
        raise SystemExit(f"{name}: training failed: {store.job(job.id).error}")
    adapter_id = store.job(job.id).adapter_id
    started = time.monotonic()
    evaluation = evaluate_adapter(store, settings.models_dir, adapter_id, general_requests_asked=settings.general_requests)
    verdict = verdict_for(store, adapter_id)
    return {"task": name, "rows": len(train), "steps": result.steps, "minutes": result.train_seconds / 60,
            "eval_seconds": time.monotonic() - started, "base_exact": evaluation.base_exact, "adapter_exact": evaluation.adapter_exact,
            "base_rouge": evaluation.base_rouge, "adapter_rouge": evaluation.adapter_rouge,
            "general_changed": evaluation.general_changed, "general_asked": evaluation.general_asked, "drift": evaluation.general_drift,
            "verdict": verdict.kind, "says": str(verdict)}


def chosen_settings(pairs: list[str]) -> dict:
    """--set name=value pairs as the settings a user chose, typed as TrainSpec's fields."""
    from studio.train.spec import TrainSpec

    chosen = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        chosen[name] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    TrainSpec.from_dict(chosen)  # refuses an unknown setting or value before anything trains
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="tickets,dates,clinic")
    parser.add_argument("--home", type=Path, help="studio home to use (default: a new temporary folder)")
    parser.add_argument("--models-dir", type=Path, help="prepared models folder to share (default: under the home)")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="a setting chosen as a user would (e.g. lora_dropout=0.1), kept by the plan; repeatable")
    args = parser.parse_args()
    from jobs.run import quiet_libraries
    from studio.models.catalog import load_tokenizer, resolve_model
    from studio.settings import load_settings
    from studio.store import Store

    quiet_libraries()
    home = args.home or Path(tempfile.mkdtemp(prefix="quality-"))
    env = {"STUDIO_HOME": str(home), **({"STUDIO_MODELS_DIR": str(args.models_dir)} if args.models_dir else {})}
    settings = load_settings(env)
    store = Store(settings.db_path)
    tokenizer = load_tokenizer(resolve_model("bundled", settings.models_dir))
    results = []
    for name in args.tasks.split(","):
        results.append(run_task(name, settings, store, tokenizer, chosen_settings(args.set)))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{'task':<8} {'rows':>5} {'steps':>6} {'minutes':>8} {'exact base → adapter':>22} {'ROUGE-L base → adapter':>24} "
          f"{'forgetting (general answers changed, drift)':>44}  verdict")
    for r in results:
        forgetting = f"{r['general_changed']} of {r['general_asked']}, {r['drift']:.2f} nats/token"
        print(f"{r['task']:<8} {r['rows']:>5} {r['steps']:>6} {r['minutes']:>8.1f} {r['base_exact']:>10.0%} → {r['adapter_exact']:<9.0%} "
              f"{r['base_rouge']:>12.2f} → {r['adapter_rouge']:<9.2f} {forgetting:>44}  {r['verdict']}")


if __name__ == "__main__":
    main()
