"""Chat with models: one base model in memory serves many adapters; answers stream token by token.

A base is read from disk once and kept (least recently used out first, within
STUDIO_CHAT_MEMORY_MB). Each adapter is loaded onto its base once, by name, and switched per
request with set_adapter, or switched off for the base's own answer. One model object cannot
answer for two adapters at once, so answers take turns through a first-come, first-served queue.
"""

import gc
import json
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from peft import PeftModel
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from studio.adapters.registry import adapter_template, saved_template
from studio.data.prompts import build_prompt
from studio.device import Device, pick_device
from studio.errors import ChatError
from studio.models.catalog import BUNDLED, BUNDLED_NAME, HUB_ID, load_base_model, load_tokenizer, resolve_model
from studio.settings import Settings
from studio.store import AdapterRecord, Store


@dataclass(frozen=True)
class Choice:
    """One side of a chat: a base model, perhaps with one adapter, and the prompt format it knows."""

    key: str  # kept with votes: "base:bundled", "adapter:3", "folder:/path" or "model:/path"
    label: str
    base_dir: Path
    adapter_dir: Path | None
    template: str  # the prompt template the model was trained with


def choose(ref: str, settings: Settings, store: Store) -> Choice:
    """The model a user picked.

    `ref` is "bundled" or "base:REF" (a base model), "adapter:ID", an adapter's id, name or
    folder, or the folder of a merged model. Raises ChatError, ModelError or NotFound with
    what to pick instead.
    """
    ref = ref.strip()
    kind, _, rest = ref.partition(":")
    if kind == "adapter":
        return _registered(store.find_adapter(rest), settings)
    if kind == "base":
        return _model(rest, settings)
    path = Path(ref).expanduser()
    if (path / "adapter_config.json").is_file():
        registered = [a for a in store.adapters() if a.path.resolve() == path.resolve()]
        return _registered(registered[0], settings) if registered else _adapter_folder(path, settings)
    if ref in ("", BUNDLED) or path.exists() or HUB_ID.match(ref):
        return _model(ref, settings)
    return _registered(store.find_adapter(ref), settings)


def choose_listed(ref: str, settings: Settings, store: Store) -> Choice:
    """The model a web user picked, among those the studio lists: the bundled base, registered
    adapters (by id, name or folder), merged models and the folders in the models folder.

    Anything else gets the same answer whether or not it names a folder on the server, so the
    model box never tells a visitor which server paths exist. Raises ChatError.
    """
    ref = ref.strip()
    known = {"", BUNDLED, "base:bundled"}
    for adapter in store.adapters():
        known |= {f"adapter:{adapter.id}", str(adapter.id), adapter.name, str(adapter.path)}
    folders = [m.path for m in store.merges()] + [p for p in settings.models_dir.glob("*") if (p / "config.json").is_file()]
    for folder in folders:
        known |= {f"base:{folder}", str(folder)}
    if ref not in known:
        raise ChatError(f"'{ref}' is not one of the studio's models. Pick the base model, a trained adapter or a merged model "
                        "from the list; to chat with another model, merge or train it in the studio first.")
    return choose(ref, settings, store)


def choose_with_base(adapter_ref: str | None, model_ref: str | None, settings: Settings, store: Store) -> Choice:
    """A model and perhaps an adapter on it, as the command line names them.

    Without --model an adapter runs on the base it was trained on; naming another base is an error.
    """
    if not adapter_ref:
        return _model(model_ref or BUNDLED, settings)
    choice = choose(adapter_ref, settings, store)
    if choice.adapter_dir is None:
        raise ChatError(f"'{adapter_ref}' is a model, not an adapter. Give it with --model instead.")
    if model_ref and resolve_model(model_ref, settings.models_dir) != choice.base_dir:
        raise ChatError(f"The adapter '{choice.label}' was trained on {choice.base_dir.name}, not on '{model_ref}'. "
                        "Leave out --model to use the base it was trained on.")
    return choice


def _model(ref: str, settings: Settings) -> Choice:
    base_dir = resolve_model(ref or BUNDLED, settings.models_dir)
    if ref in ("", BUNDLED):
        return Choice("base:bundled", f"{BUNDLED_NAME} (base)", base_dir, None, _default_template(base_dir))
    return Choice(f"model:{base_dir}", base_dir.name, base_dir, None, saved_template(base_dir) or _default_template(base_dir))


def _registered(adapter: AdapterRecord, settings: Settings) -> Choice:
    base_dir = resolve_model(adapter.base_model, settings.models_dir)
    return Choice(f"adapter:{adapter.id}", f"{adapter.name} (#{adapter.id})", base_dir, adapter.path.resolve(), adapter_template(adapter))


def _adapter_folder(path: Path, settings: Settings) -> Choice:
    spec_file = path / "spec.json"
    if not spec_file.is_file():
        raise ChatError(f"'{path}' has no spec.json, so the studio cannot tell which base model and prompt format it "
                        "was trained with. Use an adapter trained in the studio, or register it first.")
    spec = json.loads(spec_file.read_text())
    base_dir = resolve_model(spec["base_model"], settings.models_dir)
    return Choice(f"folder:{path.resolve()}", path.name, base_dir, path.resolve(), spec.get("template") or _default_template(base_dir))


def _default_template(base_dir: Path) -> str:
    return "chat" if getattr(load_tokenizer(base_dir), "chat_template", None) else "alpaca"


@dataclass(frozen=True)
class GenerationSettings:
    """The settings both sides of an A/B chat share, so neither gets an easier question."""

    temperature: float = 0.7  # 0 means greedy: the same answer every time
    top_p: float = 0.9
    max_new_tokens: int = 256
    seed: int = 0
    system_prompt: str = ""

    def validate(self) -> None:
        if not 0 <= self.temperature <= 2:
            raise ChatError(f"Temperature must be between 0 and 2, not {self.temperature}. 0 gives the same answer every time.")
        if not 0 < self.top_p <= 1:
            raise ChatError(f"Top-p must be above 0 and at most 1, not {self.top_p}.")
        if not 1 <= self.max_new_tokens <= 4096:
            raise ChatError(f"Max new tokens must be between 1 and 4096, not {self.max_new_tokens}.")

    def sampling(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens}


@dataclass(frozen=True)
class Update:
    """Where one answer stands: what the page or a script shows while it streams."""

    text: str
    state: str  # waiting, loading, answering, done, cut (reached the token limit), stopped
    tokens: int = 0
    tokens_per_second: float = 0.0
    ahead: int = 0  # requests before this one in the queue

    def describe(self) -> str:
        if self.state == "waiting":
            return f"Waiting for its turn: {self.ahead} answer{'s' if self.ahead != 1 else ''} ahead."
        if self.state == "loading":
            return "Loading the model into memory (only the first time it is used)..."
        speed = f"{self.tokens} tokens · {self.tokens_per_second:.1f} tokens/s"
        return {"answering": speed, "done": f"{speed} · done", "stopped": f"{speed} · stopped",
                "cut": f"{speed} · done, but cut off at the token limit (raise Max new tokens to read the rest)"}[self.state]

    @property
    def complete(self) -> bool:
        """The model finished its answer, or wrote until the token limit: an answer one can judge."""
        return self.state in ("done", "cut")


class FairQueue:
    """First come, first served: one answer at a time, in the order the requests arrived."""

    def __init__(self) -> None:
        self._line: deque[object] = deque()
        self._changed = threading.Condition()

    def join(self) -> object:
        ticket = object()
        with self._changed:
            self._line.append(ticket)
        return ticket

    def wait_turn(self, ticket: object, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._line[0] is ticket, timeout)

    def ahead(self, ticket: object) -> int:
        with self._changed:
            return self._line.index(ticket)

    def leave(self, ticket: object) -> None:
        with self._changed:
            self._line.remove(ticket)
            self._changed.notify_all()


@dataclass
class _Loaded:
    model: object  # the base; wrapped in a PeftModel once it carries an adapter
    size_mb: float
    adapters: dict[Path, str] = field(default_factory=dict)  # adapter folder -> its name on the model


class ModelServer:
    """The models the chat serves, kept in memory between requests, answering one at a time."""

    def __init__(self, memory_mb: int, device: Device | None = None) -> None:
        self.memory_mb = memory_mb
        self.device = device or pick_device()
        self.base_loads = 0  # bases read from disk: switching adapters must never add to it
        self._bases: OrderedDict[Path, _Loaded] = OrderedDict()
        self._queue = FairQueue()

    def loaded_bases(self) -> list[Path]:
        """The bases in memory, least recently used first."""
        return list(self._bases)

    def stream(self, choice: Choice, turns: list[dict], generation: GenerationSettings,
               stop: threading.Event | None = None) -> Iterator[Update]:
        """Answer the last user turn, yielding the answer as it grows.

        Waits its turn in the queue first; setting `stop` ends the answer (or the wait) early.
        Raises ChatError for bad settings, a model that cannot load, or too little GPU memory.
        """
        generation.validate()
        stop = stop or threading.Event()
        ticket = self._queue.join()
        try:
            while not self._queue.wait_turn(ticket, timeout=0.5):
                if stop.is_set():
                    yield Update("", "stopped")
                    return
                yield Update("", "waiting", ahead=self._queue.ahead(ticket))
            if choice.base_dir not in self._bases:
                yield Update("", "loading")
            model, adapter = self._model_for(choice)
            yield from self._generate(model, adapter, choice, turns, generation, stop)
        finally:
            self._queue.leave(ticket)

    def answer(self, choice: Choice, turns: list[dict], generation: GenerationSettings) -> Update:
        """The whole answer at once, for scripts and tests."""
        update = None
        for update in self.stream(choice, turns, generation):
            pass
        return update

    def _model_for(self, choice: Choice) -> tuple[object, str | None]:
        loaded = self._bases.get(choice.base_dir) or self._load_base(choice.base_dir)
        self._bases.move_to_end(choice.base_dir)
        if choice.adapter_dir is None:
            return loaded.model, None
        if choice.adapter_dir not in loaded.adapters:
            name = f"adapter{len(loaded.adapters) + 1}"
            try:
                if isinstance(loaded.model, PeftModel):
                    loaded.model.load_adapter(str(choice.adapter_dir), adapter_name=name)
                else:
                    loaded.model = PeftModel.from_pretrained(loaded.model, str(choice.adapter_dir), adapter_name=name)
            except (OSError, ValueError, RuntimeError, KeyError) as error:
                raise ChatError(f"The adapter in '{choice.adapter_dir}' does not fit the base model "
                                f"'{choice.base_dir.name}' ({error}). Pick the base it was trained on.") from None
            loaded.adapters[choice.adapter_dir] = name
        return loaded.model, loaded.adapters[choice.adapter_dir]

    def _load_base(self, base_dir: Path) -> _Loaded:
        need = _size_mb(base_dir)
        while self._bases and sum(b.size_mb for b in self._bases.values()) + need > self.memory_mb:
            self._bases.popitem(last=False)
        gc.collect()
        if self.device.cuda:
            torch.cuda.empty_cache()
            _check_gpu_room(need)
        loaded = _Loaded(load_base_model(base_dir, quantize_4bit=False, device=self.device), need)
        self.base_loads += 1
        self._bases[base_dir] = loaded
        return loaded

    def _generate(self, model, adapter: str | None, choice: Choice, turns: list[dict], generation: GenerationSettings,
                  stop: threading.Event) -> Iterator[Update]:
        tokenizer = load_tokenizer(choice.base_dir)
        prompt = build_prompt(turns, choice.template, tokenizer, generation.system_prompt)
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device.name)
        streamer = _CountingStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        halt = threading.Event()  # set when the reader goes away, so the thread never outlives the request
        failures: list[Exception] = []

        def run() -> None:
            try:
                torch.manual_seed(generation.seed)
                with _active(model, adapter), torch.inference_mode():
                    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                                   stopping_criteria=StoppingCriteriaList([_StopWhen(lambda: halt.is_set() or stop.is_set())]),
                                   pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **generation.sampling())
            except Exception as error:  # handed to the reader, who tells the user
                failures.append(error)
                streamer.end()

        started = time.monotonic()
        thread = threading.Thread(target=run, name="chat-generate", daemon=True)
        thread.start()
        text = ""
        try:
            for piece in streamer:
                text += piece
                yield Update(text, "answering", streamer.tokens, streamer.tokens / (time.monotonic() - started))
        finally:
            halt.set()
            thread.join()
        if failures:
            raise ChatError(f"The model stopped with an error while answering: {failures[0]}. Try a shorter conversation (Clear).")
        cut = streamer.tokens >= generation.max_new_tokens and streamer.last_token not in tokenizer.all_special_ids
        state = "stopped" if stop.is_set() else "cut" if cut else "done"
        yield Update(text, state, streamer.tokens, streamer.tokens / (time.monotonic() - started))


@contextmanager
def _active(model, adapter: str | None):
    """Switch the model to one adapter, or to the base with every adapter off."""
    if adapter is not None:
        model.set_adapter(adapter)
        yield
    elif isinstance(model, PeftModel):
        with model.disable_adapter():
            yield
    else:
        yield


class _CountingStreamer(TextIteratorStreamer):
    """A text streamer that also counts the tokens of the answer (for tokens per second) and keeps
    the last one (an answer that ends without an end-of-turn token at the limit was cut off)."""

    tokens = 0
    last_token: int | None = None

    def put(self, value) -> None:
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.tokens += value.numel()
            self.last_token = int(value.reshape(-1)[-1])
        super().put(value)


class _StopWhen(StoppingCriteria):
    def __init__(self, stopped: Callable[[], bool]) -> None:
        self.stopped = stopped

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.stopped(), dtype=torch.bool, device=input_ids.device)


def _size_mb(base_dir: Path) -> float:
    """Memory a base takes once loaded in float32, from the size of its weight files."""
    config = json.loads((base_dir / "config.json").read_text())
    stored_in_16_bits = (config.get("dtype") or config.get("torch_dtype")) in ("bfloat16", "float16")
    weights = sum(f.stat().st_size for f in base_dir.glob("*.safetensors"))
    return weights * (2 if stored_in_16_bits else 1) / 2**20


def _check_gpu_room(need_mb: float) -> None:
    """On a GPU shared with training, chat waits rather than pushing a training job out of memory."""
    free_mb = torch.cuda.mem_get_info()[0] / 2**20
    if free_mb < need_mb * 1.2 + 256:
        raise ChatError(f"Chat must wait: the GPU has {free_mb:.0f} MB free and this model needs about {need_mb * 1.2 + 256:.0f} MB. "
                        "A training job is probably using it; try again when it finishes (see the Jobs tab), or pick a smaller model.")
