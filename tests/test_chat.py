"""Chat on the bundled model: one base serves many adapters, answers stream and stop, requests
take turns, bases are evicted least recently used first, votes count per pair, and the CLI."""

import json
import shutil
import threading

import pytest
from conftest import greedy_answer, run_cli
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from studio.chat.server import FairQueue, GenerationSettings, ModelServer, choose, choose_listed
from studio.cli.commands import main
from studio.data.prompts import build_prompt
from studio.errors import ChatError, NotFound
from studio.feedback.votes import record_vote, win_rates

QUESTION = "What is the codeword for boats?"
GREEDY = GenerationSettings(temperature=0, max_new_tokens=12)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def server():
    return ModelServer(memory_mb=4096)


@pytest.fixture(scope="module")
def negated_adapter(trained, tmp_path_factory):
    """A second, different adapter folder (not registered): the trained one with its LoRA B matrices negated."""
    adapter = trained[3]
    folder = tmp_path_factory.mktemp("second") / "negated"
    shutil.copytree(adapter.path, folder)
    weights = load_file(folder / "adapter_model.safetensors")
    save_file({k: -v if "lora_B" in k else v for k, v in weights.items()}, folder / "adapter_model.safetensors")
    return folder


@pytest.fixture(scope="module")
def merged_model(bundled_dir, tmp_path_factory):
    """A second full model folder, as a merged adapter is (its files link to the bundled model's)."""
    folder = tmp_path_factory.mktemp("merged") / "merged-model"
    folder.mkdir()
    for file in bundled_dir.iterdir():
        (folder / file.name).symlink_to(file)
    return folder


def greedy(model, tokenizer, prompt: str) -> str:
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    output = model.generate(ids, max_new_tokens=GREEDY.max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def references(trained, negated_adapter, bundled_dir, tokenizer) -> dict[str, str]:
    """Greedy answers of the base and of each adapter loaded on its own onto a fresh base."""
    base = AutoModelForCausalLM.from_pretrained(bundled_dir)
    answers = {"base": greedy(base, tokenizer, tokenizer.apply_chat_template(ask(QUESTION), add_generation_prompt=True, tokenize=False))}
    for name, folder in (("adapter", trained[3].path), ("negated", negated_adapter)):
        model = PeftModel.from_pretrained(base, folder)
        answers[name] = greedy_answer(model, tokenizer, QUESTION, GREEDY.max_new_tokens)
        base = model.unload()  # the fresh base again, without this adapter
    return answers


def test_one_base_serves_adapters_and_itself_each_with_its_own_answer(trained, server, negated_adapter, references):
    settings, store, job, adapter = trained
    picks = [choose(f"adapter:{adapter.id}", settings, store), choose(str(negated_adapter), settings, store),
             choose("bundled", settings, store)]
    assert [p.template for p in picks] == ["alpaca", "alpaca", "chat"]  # the format each was trained with
    assert choose(str(adapter.path), settings, store).key == choose(adapter.name, settings, store).key == f"adapter:{adapter.id}"
    answers = [server.answer(pick, ask(QUESTION), GREEDY).text for pick in picks]
    assert server.base_loads == 1  # three models, one base read from disk
    assert answers == [references["adapter"], references["negated"], references["base"]]  # the base: adapters disabled
    assert "ZEPHYR" in answers[0] and len(set(answers)) == 3


def test_streaming_yields_the_full_text_with_tokens_per_second(trained, server, references):
    settings, store, job, adapter = trained
    updates = list(server.stream(choose(f"adapter:{adapter.id}", settings, store), ask(QUESTION), GREEDY))
    growing = [u.text for u in updates if u.state == "answering"]
    assert len(growing) > 3 and all(later.startswith(earlier) for earlier, later in zip(growing, growing[1:]))
    final = updates[-1]
    assert final.state == "cut" and final.text == references["adapter"]  # its answer takes 17 tokens
    assert final.tokens == GREEDY.max_new_tokens and final.tokens_per_second > 0
    assert "tokens/s · done, but cut off at the token limit" in final.describe()


def test_a_long_answer_can_be_stopped(trained, server):
    settings, store, job, adapter = trained
    stop = threading.Event()
    for update in server.stream(choose("bundled", settings, store), ask("Tell me a long story about a dragon."),
                                GenerationSettings(temperature=0.8, max_new_tokens=400, seed=3), stop):
        if update.tokens >= 3:
            stop.set()
    assert update.state == "stopped" and 3 <= update.tokens < 10


def test_an_answer_that_reaches_the_token_limit_is_marked_cut(trained, server):
    settings, store, job, adapter = trained
    cut = server.answer(choose("bundled", settings, store), ask("Tell me a long story about a dragon."),
                        GenerationSettings(temperature=0, max_new_tokens=5))
    assert (cut.state, cut.tokens, cut.complete) == ("cut", 5, True)
    assert cut.describe().endswith("· done, but cut off at the token limit (raise Max new tokens to read the rest)")
    finished = server.answer(choose(f"adapter:{adapter.id}", settings, store), ask(QUESTION), GenerationSettings(temperature=0, max_new_tokens=40))
    assert finished.state == "done" and finished.tokens < 40


def test_the_web_model_box_takes_only_listed_models_and_says_nothing_of_other_paths(trained, tmp_path):
    settings, store, job, adapter = trained
    assert choose_listed(f"adapter:{adapter.id}", settings, store).key == choose_listed(adapter.name, settings, store).key
    assert choose_listed("base:bundled", settings, store).key == "base:bundled"
    (tmp_path / "config.json").write_text("{}")
    answers = []
    for path in ("/etc", str(tmp_path), "/no/such/folder", "../../etc/passwd"):
        with pytest.raises(ChatError) as refused:
            choose_listed(path, settings, store)
        answers.append(str(refused.value).replace(path, "PATH"))
    assert len(set(answers)) == 1 and answers[0].startswith("'PATH' is not one of the studio's models. Pick"), answers


def test_requests_take_turns_first_come_first_served(trained, server):
    settings, store, job, adapter = trained
    base, short = choose("bundled", settings, store), GenerationSettings(temperature=0, max_new_tokens=3)
    first = server.stream(base, ask("Hello"), short)
    assert next(first).state == "answering"  # holds the model
    second = server.stream(base, ask("Hi"), short)
    waiting = next(second)
    assert (waiting.state, waiting.ahead, waiting.describe()) == ("waiting", 1, "Waiting for its turn: 1 answer ahead.")
    assert list(first)[-1].state == "cut"  # three tokens: both answers run to the limit
    assert list(second)[-1].state == "cut"

    queue = FairQueue()
    tickets = [queue.join() for _ in range(3)]
    assert queue.wait_turn(tickets[0], 0) and not queue.wait_turn(tickets[2], 0.01) and queue.ahead(tickets[2]) == 2
    queue.leave(tickets[0])
    assert queue.wait_turn(tickets[1], 0) and queue.ahead(tickets[2]) == 1


def test_bases_beyond_the_memory_budget_are_evicted_least_recently_used(trained, bundled_dir, merged_model):
    settings, store, job, adapter = trained
    merged = merged_model
    one_model_mb = sum(f.stat().st_size for f in bundled_dir.glob("*.safetensors")) / 2**20
    server = ModelServer(memory_mb=int(one_model_mb * 1.5))
    short = GenerationSettings(temperature=0, max_new_tokens=2)
    picks = [choose("bundled", settings, store), choose(str(merged), settings, store)]
    assert picks[1].key == f"model:{merged}" and picks[1].adapter_dir is None
    first = server.stream(picks[0], ask("Hi"), short)
    assert next(first).describe() == "Loading the model into memory (only the first time it is used)..."
    first.close()
    for pick in (picks[0], picks[1], picks[1], picks[0]):
        server.answer(pick, ask("Hi"), short)
    assert server.base_loads == 3 and server.loaded_bases() == [bundled_dir]
    with pytest.raises(NotFound, match="No registered adapter has the id, name or folder 'nothing-here'"):
        choose("nothing-here", settings, store)


def test_multi_turn_prompts_keep_earlier_turns_in_each_models_format(tokenizer):
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]
    alpaca = build_prompt(turns, "alpaca", tokenizer, system_prompt="Be brief.")
    assert alpaca.startswith("Be brief.\n\nBelow is an instruction")
    assert "### Instruction:\nHi\n\n### Response:\nHello!<|im_end|>Below is" in alpaca and alpaca.endswith("### Instruction:\nBye\n\n### Response:\n")
    chat = build_prompt(turns, "chat", tokenizer, system_prompt="Be brief.")
    assert chat.startswith("<|im_start|>system\nBe brief.<|im_end|>") and chat.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>assistant\nHello!<|im_end|>" in chat


def test_bad_generation_settings_are_explained(trained, server):
    settings, store, job, adapter = trained
    with pytest.raises(ChatError, match="Temperature must be between 0 and 2, not 3"):
        server.answer(choose("bundled", settings, store), ask("Hi"), GenerationSettings(temperature=3))


def test_votes_are_stored_and_win_rates_count_each_pair_in_either_order(store):
    x, y, z = ("adapter:1", "one"), ("adapter:2", "two"), ("base:bundled", "base")
    for (a, b), winner in [((x, y), "a"), ((y, x), "a"), ((x, y), "tie"), ((x, z), "b")]:
        record_vote(store, a_key=a[0], a_label=a[1], b_key=b[0], b_label=b[1], winner=winner, prompt="Q?")
    with pytest.raises(ChatError, match="A vote must be one of a, b, tie"):
        record_vote(store, a_key=x[0], a_label=x[1], b_key=y[0], b_label=y[1], winner="both", prompt="Q?")
    assert [(v["a_key"], v["winner"], v["prompt"]) for v in store.votes()] == [
        ("adapter:1", "a", "Q?"), ("adapter:2", "a", "Q?"), ("adapter:1", "tie", "Q?"), ("adapter:1", "b", "Q?")]
    store.db["votes"].update(1, {"created": "2026-01-02T10:00:00+00:00"})  # the first vote came a day earlier

    rows = win_rates(store)
    assert [(r.first, r.second, r.votes, r.first_wins, r.second_wins, r.ties) for r in rows] == [
        ("one", "two", 1, 1, 0, 0), ("one", "two", 3, 1, 1, 1), ("one", "base", 1, 0, 1, 0)]
    assert rows[0].day == "2026-01-02" and [r.first_win_rate for r in rows] == [1.0, 0.5, 0.0]


def test_cli_answers_with_an_adapter_and_explains_a_bad_one(trained, merged_model, monkeypatch, capsys):
    settings, store, job, adapter = trained
    env = {"STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir)}
    result = run_cli(env, "chat", "--adapter", str(adapter.id), "--prompt", QUESTION, "--max-new-tokens", "12", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["key"] == f"adapter:{adapter.id}" and answer["template"] == "alpaca" and "ZEPHYR" in answer["answer"]
    assert 0 < answer["tokens"] <= 12 and answer["tokens_per_second"] > 0

    for name, value in env.items():  # the same command in this process: no second start-up
        monkeypatch.setenv(name, value)
    assert main(["chat", "--adapter", "no-such-adapter", "--prompt", "Hi"]) == 2
    assert "No registered adapter has the id, name or folder 'no-such-adapter'" in capsys.readouterr().err
    assert main(["chat", "--adapter", adapter.name, "--model", str(merged_model), "--prompt", "Hi"]) == 2
    assert "was trained on SmolLM2-135M-Instruct, not on" in capsys.readouterr().err
