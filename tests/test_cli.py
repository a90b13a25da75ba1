"""`python -m studio data check` as scripts use it: exit codes, messages, JSON."""

import json

from conftest import FIXTURES, run_cli


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
