"""Rendering records with the template files: prompt and trained answer told apart."""

from studio.data.prompts import get_template, question_of, render, templates


def test_templates_are_data_files():
    assert set(templates()) == {"alpaca", "chat"}


def test_alpaca_with_and_without_input(tokenizer):
    with_input = render({"instruction": "Add", "input": "2+2", "output": "4"}, get_template("alpaca"), tokenizer)
    without = render({"instruction": "Say hi", "input": "", "output": "Hi"}, get_template("alpaca"), tokenizer)
    assert with_input[0].text.endswith("### Instruction:\nAdd\n\n### Input:\n2+2\n\n### Response:\n")
    assert "### Input:" not in without[0].text
    assert [(s.text, s.trained) for s in without[1:]] == [("Hi<|im_end|>", True)]


def test_chat_template_trains_every_assistant_turn(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}]
    segments = render({"messages": messages}, get_template("chat"), tokenizer)
    assert [s.text for s in segments if s.trained] == ["Hello<|im_end|>\n", "Ciao<|im_end|>\n"]
    assert "".join(s.text for s in segments) == tokenizer.apply_chat_template(messages, tokenize=False)


def test_alpaca_records_use_the_chat_template_as_one_exchange(tokenizer):
    segments = render({"instruction": "Add", "input": "2+2", "output": "4"}, get_template("chat"), tokenizer)
    assert segments[0].text.endswith("<|im_start|>user\nAdd\n\n2+2<|im_end|>\n<|im_start|>assistant\n")
    assert segments[1].text == "4<|im_end|>\n"


def test_a_rendered_alpaca_prompt_is_shown_as_its_instruction_and_input(tokenizer):
    def shown(record):
        return question_of(render({**record, "output": "x"}, get_template("alpaca"), tokenizer)[0].text)

    assert shown({"instruction": "Say hi\nplease", "input": ""}) == "Say hi\nplease"
    assert shown({"instruction": "Add", "input": "2+2"}) == "Add\n\nInput: 2+2"
    chat = render({"instruction": "Add", "input": "", "output": "4"}, get_template("chat"), tokenizer)[0].text
    assert question_of(chat) == chat  # not an Alpaca form: shown as it is
