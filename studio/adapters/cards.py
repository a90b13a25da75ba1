"""The README.md cards of every folder the studio hands out: one renderer for the five templates."""

import string

from studio.settings import TEMPLATES_DIR

CARDS = ("model_card", "merged_model_card", "mixed_adapter_card", "lora_serving_card", "gguf_card")


def render_card(card: str, **fields: object) -> str:
    """templates/<card>.md with its $fields filled in; a field the template names and `fields` lacks is a KeyError."""
    if card not in CARDS:
        raise ValueError(f"No card template '{card}'; the cards are {', '.join(CARDS)}.")
    return string.Template((TEMPLATES_DIR / f"{card}.md").read_text()).substitute(fields)


def table_rows(rows: list[tuple]) -> str:
    """Markdown table rows, one line per tuple, for a card's tables."""
    return "\n".join("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
