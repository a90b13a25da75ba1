"""Small HTML renderers for reports and job progress, kept apart from the layout so they stay plain functions."""

from datetime import datetime, timezone
from html import escape

from jobs.status import JobStatus
from studio.data.instructions import DataReport, ignored_columns, length_histogram
from studio.data.preferences import PreferenceReport
from studio.store import JobRecord

SPECIAL_TOKENS_NOTE = ("Text in <|…|> brackets is a special token of the model, not text from your file: "
                       "<|im_end|> closes each turn, and at the end of an answer it teaches the model where to stop.")


def message(text: str, ok: bool = False) -> str:
    return f'<div class="{"studio-ok" if ok else "studio-error"}">{escape(text)}</div>'


def summary(report: DataReport, drop: set[str]) -> str:
    mapping = ", ".join(f"{role} ← <b>{escape(column)}</b>" for role, column in report.mapping.items())
    kept = len(report.kept_indices(drop))
    unused = ignored_columns(report)
    ignored = (f"<br>Ignored columns (not trained on): {', '.join(f'<b>{escape(c)}</b>' for c in unused)}. "
               "Choose them under <i>Column mapping</i> if they hold the instruction, input or answer.") if unused else ""
    return (
        f'<div class="studio-ok"><b>{escape(report.file_name)}</b>: {report.format.upper()} file, '
        f'{"conversations" if report.shape == "chat" else "instruction records"}; columns: {mapping}.<br>'
        f"<b>{kept}</b> of {len(report.records)} rows will be used "
        f"(template <b>{escape(report.template)}</b>, maximum length {report.max_length} tokens).{ignored}</div>"
    )


def pairs_summary(report: PreferenceReport, drop: set[str]) -> str:
    kind = {"chat-pairs": "conversations ending in a chosen and a rejected answer",
            "pairs": "prompts with a chosen and a rejected answer"}.get(report.shape, "prompts and conversations with a chosen and a rejected answer")
    return (
        f'<div class="studio-ok"><b>{escape(report.file_name)}</b>: {report.format.upper()} file, preference pairs ({kind}); '
        f'columns: {", ".join(f"<b>{escape(c)}</b>" for c in report.columns)}.<br>'
        f"<b>{len(report.kept_indices(drop))}</b> of {len(report.records)} pairs will be used (prompt format "
        f"<b>{escape(report.template)}</b>, maximum length {report.max_length} tokens). Saved, they train with DPO or KTO: "
        "the Train tab's plan picks DPO.</div>"
    )


def problems(report: DataReport | PreferenceReport) -> str:
    if not report.issues:
        return message("No problems found.", ok=True)
    items = "".join(f"<li><b>{escape(title)}</b> — {escape(detail)}</li>" for title, detail in (i.message.split(": ", 1) for i in report.issues))
    return f'<div class="studio-problems"><b>Problems found</b><ul>{items}</ul></div>'


def preview(report: DataReport, drop: set[str], rows: list[int]) -> str:
    """The rendered training examples of `rows` (0-based), each marked when it will be left out."""
    kept = set(report.kept_indices(drop))
    blocks = []
    for index in rows:
        note = "" if index in kept else " · <b>left out</b>"
        if report.segments[index] is None:
            blocks.append(f'<div class="studio-example"><small>Row {index + 1}{note}</small><pre>This row cannot be used: '
                          f'its instruction or answer is empty, or its conversation is broken.</pre></div>')
            continue
        parts = "".join(
            f'<span class="{"studio-response" if s.trained else "studio-prompt"}">{escape(s.text)}</span>'
            for s in report.segments[index]
        )
        blocks.append(f'<div class="studio-example"><small>Row {index + 1} · {report.token_counts[index]} tokens{note}</small>'
                      f'<pre>{parts}</pre></div>')
    legend = ('<p>Grey: the prompt the model reads. <span class="studio-response">Green: the answer it learns to write.</span> '
              f'<small>{escape(SPECIAL_TOKENS_NOTE)}</small></p>')
    return legend + ("".join(blocks) or "<p>No rows to show from that row on.</p>")


def pairs_preview(report: PreferenceReport, drop: set[str], rows: list[int]) -> str:
    """The pairs of `rows` (0-based): the prompt, then the chosen and the rejected answer side by side with their
    token counts, each pair marked when it will be left out."""
    kept = set(report.kept_indices(drop))
    blocks = []
    for pair in report.side_by_side(rows):
        note = "" if pair["row"] - 1 in kept else " · <b>left out</b>"
        if "prompt" not in pair:
            blocks.append(f'<div class="studio-example"><small>Row {pair["row"]}{note}</small><pre>This pair cannot be used: its prompt '
                          "or an answer is missing or empty, or its two conversations do not end in two answers to the same turns.</pre></div>")
            continue
        turns = f" (the last of {pair['turns']} turns)" if pair["turns"] > 1 else ""
        blocks.append(
            f'<div class="studio-example"><small>Row {pair["row"]} · prompt{turns}, {pair["prompt_tokens"]} tokens{note}</small>'
            f'<pre class="studio-prompt">{escape(pair["prompt"])}</pre><div class="studio-pair">'
            f'<div class="studio-chosen"><small><b>Chosen</b> · {pair["chosen_tokens"]} tokens</small><pre>{escape(pair["chosen"])}</pre></div>'
            f'<div class="studio-rejected"><small><b>Rejected</b> · {pair["rejected_tokens"]} tokens</small><pre>{escape(pair["rejected"])}</pre></div>'
            "</div></div>")
    legend = "<p>Each pair: the prompt, then the answer to prefer (green) beside the answer to avoid (red).</p>"
    return legend + ("".join(blocks) or "<p>No pairs to show from that row on.</p>")


def file_size(size: int) -> str:
    """Bytes as people read a file's size: 812 KB, 10.0 MB, 1.2 GB."""
    if size < 2**20:
        return f"{max(1, round(size / 2**10))} KB"
    return f"{size / 2**20:.1f} MB" if size < 2**30 else f"{size / 2**30:.1f} GB"


def readable_time(iso: str | None) -> str:
    """A stored UTC timestamp as people read it: 30 Nov 2026, 10:18 UTC."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%-d %b %Y, %H:%M UTC")


def histogram(report: DataReport | PreferenceReport) -> str:
    bins = length_histogram(report)
    top = max((count for _, count in bins), default=0) or 1
    over = sum(1 for i in report.kept_indices() if report.token_counts[i] > report.max_length)
    rows = "".join(
        f'<tr><td>{label}</td><td><span class="studio-bar" style="width:{200 * count // top}px"></span> {count}</td></tr>'
        for label, count in bins
    )
    return f"<b>Tokens per row</b> ({over} over the maximum of {report.max_length})<table>{rows}</table>"


def history(job: JobRecord) -> str:
    """A job's notes on one line: an interruption and its resume stay visible after the job ends."""
    return "; ".join((job.notes or "").splitlines())


def progress_html(status: JobStatus) -> str:
    job = status.job
    parts = [f"<b>{escape(job.name)}</b> — <span class='studio-state'>{job.state}</span>"]
    if status.queue_position:
        parts.append(f"number {status.queue_position} in the queue")
    if job.worker and job.state == "running":
        parts.append(f"on worker {escape(job.worker)}")
    if job.total_steps:
        parts.append(f"step {job.step} of {job.total_steps}")
    if status.epoch is not None:
        parts.append(f"epoch {status.epoch:.2f}")
    if status.seconds_left is not None:
        parts.append(f"about {max(1, round(status.seconds_left / 60))} min left" if status.seconds_left >= 60 else f"about {round(status.seconds_left)} s left")
    if status.tokens_per_second:
        parts.append(f"{status.tokens_per_second:.0f} real tokens/s (padding not counted)")
    if status.utilisation:
        parts.append(f"about {status.utilisation:.0%} of this machine's compute in use (the arithmetic of the tokens trained per second, "
                     "against the matrix-multiply speed this machine reached at the job's start; memory moves and small matrices keep it "
                     "well below 100 %)")
    bar = f"<progress value='{status.fraction:.3f}' max='1' style='width:100%'></progress>"
    error = f"<div class='studio-error'>{escape(job.error)}</div>" if job.error else ""
    note = f"<div class='studio-ok' id='job-stop-note'>{escape(status.stop_note)}</div>" if status.stop_note else ""
    notes = f"<div id='job-history'>History: {escape(history(job))}</div>" if job.notes else ""
    warnings = "".join(f"<div class='studio-warn'>⚠ {escape(w.message)}</div>" for w in status.warnings)
    return f"<div id='job-progress-text'>{' · '.join(parts)}</div>{bar}{error}{note}{notes}<div id='job-health'>{warnings}</div>"
