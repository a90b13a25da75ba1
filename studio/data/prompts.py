"""Prompt templates (data files in templates/prompts/) and rendering records with them.

A rendered example is a list of segments, each marked trained or not: the preview
colours them, and training puts loss on the trained ones only.
"""

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from string import Formatter

from studio.errors import ChatError, DataError
from studio.settings import TEMPLATES_DIR

PROMPTS_DIR = TEMPLATES_DIR / "prompts"
DEFAULT_TEMPLATE = "alpaca"


@dataclass(frozen=True)
class Template:
    name: str
    title: str
    help: str
    kind: str  # "alpaca" or "chat"
    with_input: str = ""
    without_input: str = ""


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


@lru_cache(maxsize=None)
def templates() -> dict[str, Template]:
    """Every template file, by name."""
    found = {}
    for path in sorted(PROMPTS_DIR.glob("*.toml")):
        found[path.stem] = Template(name=path.stem, **tomllib.loads(path.read_text()))
    return found


def get_template(name: str) -> Template:
    try:
        return templates()[name]
    except KeyError:
        raise DataError(f"There is no prompt template called '{name}'. Choose one of: {', '.join(templates())}.") from None


def render(record: dict, template: Template, tokenizer) -> list[Segment]:
    """Render a normalised record into prompt and response segments.

    `record` holds either instruction/input/output or messages (role/content dicts).
    Raises DataError when the template cannot render this kind of record.
    """
    if template.kind == "chat":
        return _render_chat(_as_messages(record), tokenizer)
    if "messages" in record:
        record = _as_alpaca(record["messages"], template)
    form = template.with_input if record.get("input") else template.without_input
    prompt = form.format(instruction=record["instruction"], input=record.get("input", ""))
    return [Segment(prompt, False), Segment(record["output"] + tokenizer.eos_token, True)]


def _as_messages(record: dict) -> list[dict]:
    if "messages" in record:
        return record["messages"]
    user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def _as_alpaca(messages: list[dict], template: Template) -> dict:
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) != 2:
        raise DataError(
            f"The '{template.name}' template takes one question and one answer, but this data holds "
            "multi-turn conversations. Choose the 'chat' template to keep every turn."
        )
    return {"instruction": turns[0]["content"], "output": turns[1]["content"]}


def _render_chat(messages: list[dict], tokenizer) -> list[Segment]:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("This base model has no chat template. Choose the 'alpaca' template instead.")
    segments, done = [], ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (prefix.startswith(done) and full.startswith(prefix)):
            raise DataError("This model's chat template cannot be split into prompt and answer. Choose the 'alpaca' template.")
        segments += [Segment(prefix[len(done):], False), Segment(full[len(prefix):], True)]
        done = full
    return segments



def question_of(prompt: str) -> str:
    """The instruction (and input) of a prompt rendered with an Alpaca-kind template, without the
    template's fixed wording, for showing it; a prompt of any other form comes back as it is."""
    for pattern in _form_patterns():
        match = pattern.fullmatch(prompt)
        if match:
            parts = match.groupdict()
            return parts["instruction"] + (f"\n\nInput: {parts['input']}" if parts.get("input") else "")
    return prompt


@lru_cache(maxsize=None)
def _form_patterns() -> list[re.Pattern]:
    """A pattern per Alpaca-kind form, its {instruction} and {input} fields as named groups."""
    forms = [form for t in templates().values() if t.kind == "alpaca" for form in (t.with_input, t.without_input) if form]
    return [re.compile("".join(re.escape(text) + (f"(?P<{field}>.*?)" if field else "") for text, field, _, _ in Formatter().parse(form)),
                       re.DOTALL) for form in forms]


def token_ids(texts: list[str], tokenizer) -> list[list[int]]:
    """Token ids of many texts in one batch, without special tokens.

    The Rust tokenizer behind a fast tokenizer skips transformers' per-text Python work.
    """
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def encode(rows: list[list[Segment]], tokenizer, max_length: int, responses_only: bool = True) -> list[dict]:
    """Token ids and labels per row, cut at max_length; labels are -100 where no loss is taken.

    Rows whose trained part is cut away entirely are left out: they would teach nothing.
    """
    ids = iter(token_ids([s.text for row in rows for s in row], tokenizer))
    encoded = []
    for row in rows:
        input_ids, labels = [], []
        for segment in row:
            part = next(ids)
            input_ids += part
            labels += part if segment.trained or not responses_only else [-100] * len(part)
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        if any(label != -100 for label in labels):
            encoded.append({"input_ids": input_ids, "labels": labels})
    return encoded


def build_prompt(turns: list[dict], template_name: str, tokenizer, system_prompt: str = "") -> str:
    """The text a model reads before its next answer, in the format it was trained with.

    `turns` alternate user and assistant messages ({"role", "content"}) and end with the user's.
    """
    template = get_template(template_name)
    if template.kind == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ChatError("This model has no chat template, so it cannot chat in that format. Pick a model trained with the Alpaca template.")
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return tokenizer.apply_chat_template(system + turns, add_generation_prompt=True, tokenize=False)
    text = f"{system_prompt}\n\n" if system_prompt else ""
    for i in range(0, len(turns), 2):
        answered = i + 1 < len(turns)
        record = {"instruction": turns[i]["content"], "input": "", "output": turns[i + 1]["content"] if answered else ""}
        prompt, answer = render(record, template, tokenizer)
        text += prompt.text + (answer.text if answered else "")
    return text
