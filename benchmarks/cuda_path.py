"""The studio's CUDA path end to end on a GPU machine, driven through the command line as a user drives it.

QLoRA (bitsandbytes' 4-bit base and its paged 8-bit AdamW on the GPU) trained by a queue worker bound to
GPU 0; bf16 LoRA trained here, each with its verdict; DPO continuing the LoRA adapter on preference pairs;
merging the QLoRA adapter into its unquantised base; GGUF and vLLM/llama.cpp LoRA exports, which llama.cpp
checks; chat with and without the adapter. Every step is timed and a failing step does not stop the others.
Run by hand where there is a GPU (the test suite never needs one):

    .venv/bin/python -m benchmarks.cuda_path [--report cuda_path.json]

What it showed on an H200 is in the README (GPU section).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "library_helpdesk.jsonl"
QUESTION = "When is the library open on Saturdays?"
STEPS = ["facts", "model", "qlora", "lora", "dpo", "chat", "gguf", "lora-export", "merge"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="also write every step's outcome here as JSON")
    parser.add_argument("--only", default=",".join(STEPS), help="the steps to run, comma-separated, from: " + ", ".join(STEPS))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("No CUDA device here: this check is for a GPU machine.")
    home = Path(tempfile.mkdtemp(prefix="cuda-path-"))
    env = {**os.environ, "STUDIO_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    check = CudaPathCheck(home, env)
    check.run_all(set(args.only.split(",")))
    print(check.table())
    if args.report:
        args.report.write_text(json.dumps(check.steps, indent=1))


class CudaPathCheck:
    """The steps in order; later steps use the adapters earlier ones made and are skipped if those failed."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.steps: list[dict] = []
        self.qlora_id: int | None = None
        self.lora_id: int | None = None

    def run_all(self, only: set[str]) -> None:
        exported = lambda: self.lora_id or self.qlora_id  # noqa: E731 - the exports take whichever adapter was trained
        steps = [
            ("facts", "GPU and libraries", lambda: True, self.facts),
            ("model", "bundled model prepared", lambda: True, self.prepare_model),
            ("qlora", "QLoRA on the queue's GPU worker", lambda: True, self.qlora_on_worker),
            ("lora", "bf16 LoRA here, with its verdict", lambda: True, self.lora_here),
            ("dpo", "DPO continuing the LoRA adapter", lambda: self.lora_id, self.dpo),
            ("chat", "chat: base and adapter", exported, self.chat),
            ("gguf", "GGUF export checked by llama.cpp", exported, lambda: self.cli(
                "export", "--adapter", str(exported()), "--format", "gguf", "--kinds", "f16,q8_0", "--output", str(self.home / "gguf.zip"))),
            ("lora-export", "LoRA export (vLLM, GGUF LoRA)", exported, lambda: self.cli(
                "export", "--adapter", str(exported()), "--format", "lora", "--output", str(self.home / "lora.zip"))),
            ("merge", "merge the QLoRA adapter (bf16)", lambda: self.qlora_id, lambda: self.cli(
                "merge", "--adapter", str(self.qlora_id), "--dtype", "bfloat16", "--output", str(self.home / "merged-qlora"))),
        ]
        for key, name, ready, action in steps:
            if key in only and ready():
                self.step(name, action)

    def step(self, name: str, action) -> None:
        started = time.monotonic()
        try:
            outcome, ok = action(), True
        except Exception as error:  # noqa: BLE001 - a check reports every failure and goes on
            outcome, ok = f"{type(error).__name__}: {error}"[-2000:], False
        self.steps.append({"step": name, "ok": ok, "seconds": round(time.monotonic() - started, 1), "outcome": outcome})
        print(f"[{'ok' if ok else 'FAILED'}] {name} ({self.steps[-1]['seconds']} s): {outcome}", flush=True)

    def cli(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "studio", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"exit {result.returncode}: {result.stderr.strip()[-1500:]}")
        return result.stdout.strip()[-1500:]

    def facts(self) -> dict:
        import bitsandbytes
        import peft
        import torch
        import transformers
        import trl

        from studio.device import peak_flops, pick_device

        device = pick_device()
        layer = bitsandbytes.nn.Linear4bit(576, 1536, compute_dtype=torch.bfloat16, quant_type="nf4").cuda()
        out = layer(torch.randn(4, 576, device="cuda", dtype=torch.bfloat16))
        return {"gpu": torch.cuda.get_device_name(0), "capability": torch.cuda.get_device_capability(0), "torch": torch.__version__,
                "cuda": torch.version.cuda, "bitsandbytes": bitsandbytes.__version__, "transformers": transformers.__version__,
                "peft": peft.__version__, "trl": trl.__version__, "studio device": device.name, "bf16": device.bf16,
                "bf16 TFLOP/s (studio probe)": round(peak_flops(device) / 1e12), "nf4 layer on cuda": f"{out.dtype}, {tuple(out.shape)}"}

    def prepare_model(self) -> str:
        from studio.models.catalog import prepare_bundled_model
        from studio.settings import load_settings

        return str(prepare_bundled_model(load_settings(self.env).models_dir, report=lambda message: None))

    def qlora_on_worker(self) -> dict:
        worker = subprocess.Popen([sys.executable, "-m", "jobs.worker", "--gpu", "0"], cwd=ROOT, env=self.env,
                                  stdout=open(self.home / "worker.log", "w"), stderr=subprocess.STDOUT)
        try:
            queued = json.loads(self.cli("train", "--data", str(DATA), "--method", "qlora", "--optimizer", "paged_adamw_8bit",
                                         "--name", "helpdesk-qlora", "--enqueue", "--json").splitlines()[-1])
            job = self.wait_for_job(queued["job_id"], minutes=8)
            self.qlora_id = job.adapter_id
            verdict = self.wait_for_verdict(job.adapter_id, minutes=4)
            workers = self.store().workers()
            return {**self.job_facts(job), "verdict": verdict, "worker device": workers[0].get("device") if workers else None}
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    def lora_here(self) -> dict:
        outcome = json.loads(self.cli("train", "--data", str(DATA), "--method", "lora", "--name", "helpdesk-lora", "--json").splitlines()[-1])
        self.lora_id = outcome["adapter_id"]
        return {**self.job_facts(self.store().job(outcome["job_id"])), "verdict": outcome.get("verdict")}

    def dpo(self) -> dict:
        rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
        pairs = self.home / "pairs.jsonl"  # the right answer preferred over another question's answer
        pairs.write_text("".join(json.dumps({"prompt": row["instruction"], "chosen": row["output"], "rejected": rows[(i + 7) % len(rows)]["output"]}) + "\n"
                                 for i, row in enumerate(rows) if row["output"] != rows[(i + 7) % len(rows)]["output"]))
        outcome = json.loads(self.cli("train", "--data", str(pairs), "--objective", "dpo", "--start-adapter-id", str(self.lora_id),
                                      "--name", "helpdesk-dpo", "--json").splitlines()[-1])
        metrics = self.store().metrics(outcome["job_id"])
        rewards = [m for m in metrics if m.get("reward_accuracy") is not None]
        return {**self.job_facts(self.store().job(outcome["job_id"])),
                "reward accuracy first -> last": [rewards[0]["reward_accuracy"], rewards[-1]["reward_accuracy"]] if rewards else None}

    def chat(self) -> dict:
        base = json.loads(self.cli("chat", "--prompt", QUESTION, "--max-new-tokens", "40", "--json"))
        tuned = json.loads(self.cli("chat", "--adapter", str(self.lora_id), "--prompt", QUESTION, "--max-new-tokens", "40", "--json"))
        return {"question": QUESTION, "base": base.get("answer"), "adapter": tuned.get("answer")}

    def store(self):
        from studio.settings import load_settings
        from studio.store import Store

        return Store(load_settings(self.env).db_path)

    def wait_for_job(self, job_id: int, minutes: float):
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            job = self.store().job(job_id)
            if job.is_finished:
                if job.state != "succeeded":
                    raise RuntimeError(f"job {job_id} {job.state}: {job.error}; its log: {self.job_log(job_id)}")
                return job
            time.sleep(2)
        raise TimeoutError(f"job {job_id} not finished after {minutes} min; its log: {self.job_log(job_id)}")

    def job_log(self, job_id: int) -> str:
        log = self.home / "jobs" / str(job_id) / "train.log"  # where jobs.tasks writes a queued job's log
        return log.read_text()[-1500:] if log.is_file() else "(none)"

    def wait_for_verdict(self, adapter_id: int, minutes: float) -> str:
        from studio.evaluate.verdict import verdict_for

        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            verdict = verdict_for(self.store(), adapter_id)
            if verdict is not None:
                return str(verdict)
            time.sleep(2)
        raise TimeoutError(f"no verdict for adapter {adapter_id} after {minutes} min")

    def job_facts(self, job) -> dict:
        adapter = self.store().adapter(job.adapter_id)
        last = self.store().metrics(job.id)[-1]
        return {"job": job.id, "adapter": adapter.id, "steps": job.step, **{k: v for k, v in adapter.summary.items() if k in
                ("final_loss", "eval_loss", "tokens", "train_seconds")}, "last metrics": last}

    def table(self) -> str:
        lines = [f"{'step':<40} {'result':<7} {'seconds':>8}"]
        lines += [f"{s['step']:<40} {'ok' if s['ok'] else 'FAILED':<7} {s['seconds']:>8}" for s in self.steps]
        return "\n".join(lines)


if __name__ == "__main__":
    main()
