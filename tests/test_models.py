"""The bundled model and the model catalog: local folders, hub ids, unsafe folders."""

import json
import time

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from studio.errors import ModelError
from studio.models.catalog import prepare_bundled_model, public_name, resolve_model


def test_bundled_model_is_a_plain_folder_that_answers(bundled_dir, tokenizer):
    config = json.loads((bundled_dir / "config.json").read_text())
    assert "quantization_config" not in config and (bundled_dir / "model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(bundled_dir)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")["input_ids"]
    answer = tokenizer.decode(model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:])
    assert "Paris" in answer


def test_prepared_model_is_reused(models_dir):
    started = time.monotonic()
    assert prepare_bundled_model(models_dir, report=pytest.fail) == resolve_model("bundled", models_dir)
    assert time.monotonic() - started < 5


def test_leftover_staging_folder_is_not_taken_for_the_model(tmp_path, models_dir):
    (tmp_path / ".staging-abc").mkdir()
    (tmp_path / ".staging-abc" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="No model folder at"):
        resolve_model(str(tmp_path / "SmolLM2-135M-Instruct"), models_dir)


def test_local_folder_is_accepted(bundled_dir, models_dir):
    assert resolve_model(str(bundled_dir), models_dir) == bundled_dir


def test_hub_id_without_network_says_what_to_do(models_dir):
    with pytest.raises(ModelError, match="Could not download 'someone/some-model'.*give the path of its local folder"):
        resolve_model("someone/some-model", models_dir)


def test_folder_with_pickle_weights_is_refused(tmp_path, models_dir):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match=r"pickle weights \(pytorch_model.bin\).*safetensors only"):
        resolve_model(str(tmp_path), models_dir)


def test_folder_with_code_needs_trust(tmp_path, models_dir, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    model = tmp_path / "custom"
    model.mkdir()
    (model / "config.json").write_text("{}")
    save_file({"w": torch.zeros(1)}, model / "model.safetensors")
    (model / "modeling_custom.py").write_text("print('hi')")
    with pytest.raises(ModelError, match="ships its own code.*STUDIO_TRUST_CODE_OF"):
        resolve_model(str(model), models_dir)
    monkeypatch.setenv("STUDIO_TRUST_CODE_OF", f"someone/else, {model}")
    assert resolve_model(str(model), models_dir) == model


def test_nonsense_reference_is_explained(models_dir):
    with pytest.raises(ModelError, match="not a hub id of the form 'owner/name'"):
        resolve_model("not a model", models_dir)


@pytest.mark.parametrize("ref, name", [("bundled", "HuggingFaceTB/SmolLM2-135M-Instruct"), ("", "HuggingFaceTB/SmolLM2-135M-Instruct"),
                                       ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"), ("/srv/models/my-llama", "my-llama")])
def test_model_cards_name_the_base_as_the_world_knows_it(ref, name):
    assert public_name(ref) == name


def test_an_adapters_card_names_the_real_base_model_in_its_header_text_and_code(tmp_path):
    from studio.train.recipe import TrainInputs, TrainResult, model_card
    from studio.train.spec import TrainSpec

    inputs = TrainInputs(TrainSpec(), "support", "bundled", tmp_path, [], "alpaca", 0.05, 42, "ab" * 32)
    result = TrainResult(tmp_path, 10, 1.5, 1.7, 100, 120, 5.0, 4.0, False, 95, 5, False, None, 0)
    card = model_card(inputs, result)
    assert card.startswith("---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n") and "bundled" not in card
    assert "adapter for **HuggingFaceTB/SmolLM2-135M-Instruct**" in card
    assert 'AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in card
