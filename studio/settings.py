"""Every knob the studio reads from the environment, read once into one frozen object.

SETTINGS is the declarative table (name, default, help); the README documents each
entry and a test checks that it does.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from studio.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"  # prompt templates (prompts/) and model cards
EXAMPLES_DIR = PROJECT_ROOT / "examples"
TOKEN_CACHE = ".encoded"  # in the jobs folder, beside the work folders: every job of a studio shares the tokenised datasets


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS = [
    Setting("STUDIO_HOME", "~/.adapter-studio", "Folder for the database, queue, models, datasets and adapters."),
    Setting("STUDIO_MODELS_DIR", "", "Folder for prepared base models; empty means STUDIO_HOME/models. Share it between homes to prepare the bundled model once."),
    Setting("STUDIO_HOST", "127.0.0.1", "Address the web studio listens on. Set STUDIO_AUTH before using anything but 127.0.0.1."),
    Setting("STUDIO_PORT", "7860", "Port the web studio listens on."),
    Setting("STUDIO_AUTH", "", "Login: 'user:password' pairs separated by commas, or the path of a file with one pair per line; each user is an admin, or takes the role written after the password ('ben:secret:reviewer'). Empty means no login unless people were added with 'users add'."),
    Setting("STUDIO_QUEUE", "", "Job queue: empty for a SQLite queue file under STUDIO_HOME, or a redis://HOST:PORT/DB URL for many workers."),
    Setting("STUDIO_MAX_UPLOAD_MB", "200", "Largest file, in megabytes, that can be uploaded or checked."),
    Setting("STUDIO_TRUST_CODE_OF", "", "Model folders or hub ids, separated by commas, whose own code may run when they load (trust_remote_code). Only for models whose authors you trust."),
    Setting("STUDIO_GENERAL_REQUESTS", "60", "How many of the bundled ordinary requests every evaluation asks base and adapter, to measure what the adapter forgot (at most 60; fewer is faster)."),
    Setting("STUDIO_CHAT_MEMORY_MB", "4096", "Memory, in megabytes, that the Chat tab may fill with base models; the least recently used is unloaded beyond it."),
]


@dataclass(frozen=True)
class Settings:
    home: Path
    models_dir: Path
    host: str
    port: int
    auth: str
    queue: str
    max_upload_mb: int
    chat_memory_mb: int
    general_requests: int
    trust_code_of: tuple[str, ...]

    @property
    def db_path(self) -> Path:
        return self.home / "studio.db"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def jobs_dir(self) -> Path:
        """Each job's working folder (checkpoints, logs) and, beside them, the token cache."""
        return self.home / "jobs"

    @property
    def token_cache_dir(self) -> Path:
        return self.jobs_dir / TOKEN_CACHE

    @property
    def merged_dir(self) -> Path:
        return self.home / "merged"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    @property
    def queue_path(self) -> Path:
        return self.home / "queue.db"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `env` (the process environment by default) and create STUDIO_HOME."""
    env = os.environ if env is None else env
    value = {s.name: env.get(s.name, "").strip() or s.default for s in SETTINGS}
    home = Path(value["STUDIO_HOME"]).expanduser().resolve()
    models_dir = Path(value["STUDIO_MODELS_DIR"]).expanduser().resolve() if value["STUDIO_MODELS_DIR"] else home / "models"
    settings = Settings(
        home=home,
        models_dir=models_dir,
        host=value["STUDIO_HOST"],
        port=_positive_int(value, "STUDIO_PORT"),
        auth=value["STUDIO_AUTH"],
        queue=value["STUDIO_QUEUE"],
        max_upload_mb=_positive_int(value, "STUDIO_MAX_UPLOAD_MB"),
        chat_memory_mb=_positive_int(value, "STUDIO_CHAT_MEMORY_MB"),
        general_requests=_positive_int(value, "STUDIO_GENERAL_REQUESTS"),
        trust_code_of=tuple(ref.strip() for ref in value["STUDIO_TRUST_CODE_OF"].split(",") if ref.strip()),
    )
    for folder in (settings.home, settings.models_dir, settings.datasets_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return settings


def _positive_int(value: Mapping[str, str], name: str) -> int:
    try:
        number = int(value[name])
    except ValueError:
        number = 0
    if number <= 0:
        raise SettingsError(f"{name} must be a whole number above 0, not {value[name]!r}.")
    return number


def auth_pairs(auth: str) -> list[tuple[str, str]]:
    """STUDIO_AUTH as (user, password) pairs: 'u:p,u2:p2', or a file with one 'u:p' per line."""
    if not auth:
        return []
    path = Path(auth).expanduser()
    entries = path.read_text().split() if path.is_file() else auth.split(",")
    pairs = [tuple(e.strip().split(":", 1)) for e in entries if e.strip()]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise SettingsError("STUDIO_AUTH must hold user:password pairs separated by commas, or name a file with one user:password per line.")
    return pairs
