"""The recipe a child process runs for an evaluate, merge, mix or export job: load it from the store,
do it, record the artifact, exit. `python -m jobs.run --job-id N` dispatches here by kind."""

import logging
from dataclasses import replace
from pathlib import Path

from jobs.reporting import record_failure
from studio.adapters.registry import adapter_folder, slug
from studio.evaluate.measure import evaluate_adapter
from studio.evaluate.verdict import verdict_for, write_to_card
from studio.export.gguf import export_gguf
from studio.export.lora_serving import adapter_answers, check_servable, export_lora
from studio.export.merge import check_prompts, merge_adapter, mix_adapters, mixed_dataset_hash
from studio.adapters.registry import adapter_template
from studio.models.catalog import public_name, resolve_model
from studio.settings import Settings
from studio.store import JobRecord, MergeRecord, Store, now

log = logging.getLogger("studio.job")


class _Cancelled(Exception):
    """The user pressed Cancel; the job stops at its next step."""


def merged_folder(settings: Settings, job_id: int, adapter_name: str, dtype: str) -> Path:
    return settings.merged_dir / f"job{job_id}-{slug(adapter_name)}-{dtype}"


def run_artifact_job(settings: Settings, store: Store, job_id: int) -> bool:
    """Run one evaluate, merge, mix or export job to the end, recording the outcome in the store; False when it failed."""
    job = store.job(job_id)
    store.update_job(job_id, state="running", started=job.started or now(), error=None)
    try:
        {"evaluate": _evaluate, "merge": _merge, "mix": _mix, "gguf": _gguf, "lora": _lora}[job.kind](settings, store, job)
    except _Cancelled:
        store.update_job(job_id, state="cancelled", finished=now())
        log.info("Job %d cancelled", job_id)
        return True
    except Exception as error:
        record_failure(store, job_id, error, f"The {job.kind} job")
        return False
    store.update_job(job_id, state="succeeded", finished=now())
    log.info("Job %d succeeded", job_id)
    return True


def _progress(store: Store, job_id: int):
    def report(done: int, total: int) -> None:
        if store.job(job_id).cancel_requested:
            raise _Cancelled
        store.update_job(job_id, step=done, total_steps=total)
        log.info("step %d/%d", done, total)

    return report


def _evaluate(settings: Settings, store: Store, job: JobRecord) -> None:
    evaluation = evaluate_adapter(store, settings.models_dir, job.spec["adapter_id"], job.id, _progress(store, job.id),
                                  test_dataset_id=job.spec.get("test_dataset_id"), general_requests_asked=settings.general_requests)
    log.info("Loss on %s %.4f -> %.4f, ROUGE-L %.3f -> %.3f (base -> adapter)", evaluation.source, evaluation.base_loss,
             evaluation.adapter_loss, evaluation.base_rouge, evaluation.adapter_rouge)
    verdict = verdict_for(store, evaluation.adapter_id)
    write_to_card(store.adapter(evaluation.adapter_id).path, verdict)
    log.info("Verdict: %s", verdict)


def _merge(settings: Settings, store: Store, job: JobRecord) -> MergeRecord:
    adapter, dtype = store.adapter(job.spec["adapter_id"]), job.spec["dtype"]
    output = Path(job.spec["output"]) if job.spec.get("output") else merged_folder(settings, job.id, adapter.name, dtype)
    base_dir = resolve_model(adapter.base_model, settings.models_dir)
    verified = merge_adapter(adapter, base_dir, output, dtype, check_prompts(store, adapter), _progress(store, job.id))
    merge = store.add_merge(adapter_id=adapter.id, job_id=job.id, dtype=dtype, path=output.resolve(), verified_prompts=verified)
    log.info("Merged model %d saved in %s (%d prompts verified)", merge.id, output, verified)
    return merge


def _gguf(settings: Settings, store: Store, job: JobRecord) -> None:
    """Export the adapter's newest full-precision merge as GGUF files; merge it in float32 first if there is none."""
    adapter = store.adapter(job.spec["adapter_id"])
    report = _progress(store, job.id)
    merge = next((m for m in store.merges(adapter.id) if m.dtype == "float32" and m.path.is_dir()), None)
    if merge is None:
        log.info("No float32 merge of adapter %d yet: merging it first", adapter.id)
        merge = _merge(settings, store, replace(job, spec={"adapter_id": adapter.id, "dtype": "float32"}))
    output = settings.exports_dir / f"job{job.id}-{slug(adapter.name)}-gguf.zip"
    result = export_gguf(merge.path, slug(adapter.name), adapter_template(adapter), job.spec["kinds"], check_prompts(store, adapter),
                         output, {"base_model": public_name(adapter.base_model), "adapter": adapter.name}, report)
    exported = store.add_export(adapter_id=adapter.id, job_id=job.id, format="gguf", path=output.resolve(), report=result)
    for kind in result["kinds"]:
        log.info("%s: %s MB, converted in %s s, %d of %d check answers equal to the merged model's", kind["file"], kind["mb"],
                 kind["convert_seconds"], kind["agree"], result["prompts"])
    log.info("GGUF export %d saved in %s", exported.id, output)


def _lora(settings: Settings, store: Store, job: JobRecord) -> None:
    """Export the adapter alone for vLLM and as a GGUF LoRA for llama.cpp."""
    adapter = store.adapter(job.spec["adapter_id"])
    progress = _progress(store, job.id)
    check_servable(adapter.path)
    base_dir = resolve_model(adapter.base_model, settings.models_dir)
    prompts = check_prompts(store, adapter)
    expected = adapter_answers(adapter.path, base_dir, prompts)
    output = settings.exports_dir / f"job{job.id}-{slug(adapter.name)}-lora.zip"
    result = export_lora(adapter.path, base_dir, adapter.base_model, slug(adapter.name), adapter_template(adapter), prompts,
                         expected, output, progress)
    exported = store.add_export(adapter_id=adapter.id, job_id=job.id, format="lora", path=output.resolve(), report=result)
    log.info("LoRA export %d saved in %s; the GGUF LoRA answered %d of %d check prompts as the merged model", exported.id,
             output, result["gguf_lora_agree"], result["prompts"])


def _mix(settings: Settings, store: Store, job: JobRecord) -> None:
    adapters = [store.adapter(i) for i in job.spec["adapter_ids"]]
    weights = [float(w) for w in job.spec["weights"]]
    progress = _progress(store, job.id)
    progress(0, 1)
    output = adapter_folder(settings.adapters_dir, job.id, job.name)
    rank = mix_adapters(adapters, weights, resolve_model(adapters[0].base_model, settings.models_dir), output, job.name)
    lineage = [{"adapter_id": a.id, "name": a.name, "weight": w} for a, w in zip(adapters, weights)]
    recipe = " + ".join(f"{w:g} × #{a.id} {a.name}" for a, w in zip(adapters, weights))
    adapter = store.add_adapter(name=job.name, job_id=job.id, path=output, base_model=adapters[0].base_model,
                                dataset_hash=mixed_dataset_hash(adapters), method="mix", spec={"rank": rank, "mix": recipe},
                                summary={"mixed_from": lineage}, status="complete", parent_id=adapters[0].id)
    store.update_job(job.id, adapter_id=adapter.id)
    progress(1, 1)
    log.info("Mixed adapter %d saved in %s", adapter.id, output)
