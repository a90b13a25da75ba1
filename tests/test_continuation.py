"""Continuing from an adapter: its weights start the run, its shape wins, the lineage is recorded."""

import json

import pytest
from conftest import quick_spec, train_now

from studio.errors import SpecError
from studio.train.continuation import start_adapter


def test_a_run_continues_from_an_adapter_keeps_its_shape_and_records_its_parent(trained):
    settings, store, job, parent = trained
    dataset = store.dataset(job.dataset_id)
    child_job = train_now(settings, store, dataset, quick_spec(max_steps=2, rank=8, lora_alpha=16, start_adapter_id=parent.id),
                          name="codewords-longer")
    child = store.adapter(child_job.adapter_id)
    assert child.parent_id == parent.id
    assert child.spec["rank"] == 16 and child.spec["lora_alpha"] == 32  # the parent's shape, not the asked-for rank 8
    assert json.loads((child.path / "adapter_config.json").read_text())["r"] == 16
    first_loss = store.metrics(child_job.id)[0]["loss"]
    assert first_loss < store.metrics(job.id)[0]["loss"] / 2  # it starts where the parent ended, not from scratch
    assert "its shape is kept (rank 8 → 16, lora alpha 16 → 32)" in start_adapter(
        store, quick_spec(rank=8, lora_alpha=16, start_adapter_id=parent.id), "bundled", settings.models_dir).note


def test_continuing_on_another_base_model_is_refused(trained):
    settings, store, job, parent = trained
    with pytest.raises(SpecError, match="was trained on the base model 'bundled', not 'someone/other-model'"):
        start_adapter(store, quick_spec(start_adapter_id=parent.id), "someone/other-model", settings.models_dir)
