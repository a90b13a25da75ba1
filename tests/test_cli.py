"""`python -m studio data check` as scripts use it: exit codes, messages, JSON."""

import json

from conftest import FIXTURES, run_cli, run_command


def test_usable_file_exits_0_with_warnings_in_json(studio_env):
    result = run_cli(studio_env, "data", "check", str(FIXTURES / "problems.jsonl"), "--max-length", "128", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["ok"], report["rows"], report["format"], report["errors"]) == (True, 7, "jsonl", [])
    assert report["mapping"] == {"instruction": "instruction", "input": "input", "output": "output"}
    assert {w["kind"]: w["rows"] for w in report["warnings"]} == {"empty": [7, 9], "duplicate": [5], "too_long": [8], "personal_data": [6]}


def test_refused_file_exits_2_with_the_message_on_stderr(studio_env):
    result = run_cli(studio_env, "data", "check", str(FIXTURES / "broken.jsonl"))
    assert result.returncode == 2
    assert "broken.jsonl, line 2, column" in result.stderr and result.stdout == ""


def test_refused_file_in_json_has_ok_false(studio_env):
    result = run_cli(studio_env, "data", "check", str(FIXTURES / "missing_output.csv"), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 2 and report["ok"] is False and "Columns found: instruction, notes" in report["errors"][0]


def test_template_and_mapping_flags(studio_env):
    result = run_cli(studio_env, "data", "check", str(FIXTURES / "custom_columns.csv"), "--mapping",
                     "instruction=ask,output=reply_text", "--template", "chat", "--json")
    report = json.loads(result.stdout)
    assert (report["rows"], report["template"]) == (4, "chat")


def test_bad_arguments_exit_2(studio_env):
    result = run_cli(studio_env, "data", "check", "x.csv", "--max-length", "lots")
    assert result.returncode == 2 and "invalid int value" in result.stderr


def test_train_runs_here_and_prints_the_outcome(studio_env, codeword_file, tmp_path):
    output = tmp_path / "my-adapter"
    result = run_cli(studio_env, "train", "--data", str(codeword_file), "--method", "lora", "--max-steps", "2",
                     "--batch-size", "4", "--max-length", "96", "--rank", "4", "--lora-alpha", "8", "--output", str(output), "--json", "--no-verdict")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["state"], outcome["steps"], outcome["adapter_dir"]) == ("succeeded", 2, str(output))
    assert outcome["tokens"] > 0 and outcome["seconds"] > 0 and outcome["final_loss"] > 0
    assert json.loads((output / "adapter_config.json").read_text())["r"] == 4
    jobs = json.loads(run_cli(studio_env, "jobs", "--json").stdout)
    assert [(j["name"], j["state"], j["step"]) for j in jobs] == [("codewords-lora", "succeeded", 2)]


def test_train_enqueue_puts_the_job_on_the_queue(studio_env, codeword_file):
    result = run_command(studio_env, "train", "--data", str(codeword_file), "--method", "qlora", "--enqueue", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "queued"
    assert "queued" in run_command(studio_env, "jobs").stdout


def test_train_refuses_bad_settings_with_the_field_and_what_is_allowed(studio_env, codeword_file):
    result = run_cli(studio_env, "train", "--data", str(codeword_file), "--rank", "0")
    assert result.returncode == 2 and "rank" in result.stderr.lower() and "1" in result.stderr
    result = run_cli(studio_env, "train", "--data", str(codeword_file), "--method", "full")
    assert result.returncode == 2 and "invalid choice: 'full'" in result.stderr
    result = run_cli(studio_env, "train", "--data", "no-such-dataset")
    assert result.returncode == 2 and "no-such-dataset" in result.stderr
