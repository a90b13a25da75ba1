"""A/B votes from the Chat tab, and each pair's win rate as the votes come in.

A pair is the same pair whichever side each model sat on: votes are turned to one order
(by model key) before counting. A tie counts half a win for each.
"""

from dataclasses import dataclass
from itertools import groupby

from studio.errors import ChatError
from studio.store import Store

WINNERS = {"a": "A better", "b": "B better", "tie": "tie"}


def record_vote(store: Store, *, a_key: str, a_label: str, b_key: str, b_label: str, winner: str, prompt: str) -> int:
    """Store one vote on the last answers of A and B; returns its id."""
    if winner not in WINNERS:
        raise ChatError(f"A vote must be one of {', '.join(WINNERS)}, not '{winner}'.")
    return store.add_vote(a_key=a_key, a_label=a_label, b_key=b_key, b_label=b_label, winner=winner, prompt=prompt)


@dataclass(frozen=True)
class PairDay:
    """A pair's standing at the end of one day with votes: counts and win rate to date."""

    first: str
    second: str
    day: str
    votes: int
    first_wins: int
    second_wins: int
    ties: int

    @property
    def first_win_rate(self) -> float:
        return (self.first_wins + self.ties / 2) / self.votes


def win_rates(store: Store) -> list[PairDay]:
    """Each pair's running win rate, one row per day on which it got votes, pairs in order of first vote."""
    labels, rows = {}, []
    for vote in store.votes():
        labels[vote["a_key"]], labels[vote["b_key"]] = vote["a_label"], vote["b_label"]
        flipped = vote["b_key"] < vote["a_key"]
        winner = {"a": "b", "b": "a"}.get(vote["winner"], "tie") if flipped else vote["winner"]
        pair = (vote["b_key"], vote["a_key"]) if flipped else (vote["a_key"], vote["b_key"])
        rows.append((pair, vote["created"][:10], winner))
    pairs = list(dict.fromkeys(pair for pair, _, _ in rows))
    table = []
    for pair in pairs:
        counts = {"a": 0, "b": 0, "tie": 0}
        for day, day_rows in groupby([r for r in rows if r[0] == pair], key=lambda r: r[1]):
            for _, _, winner in day_rows:
                counts[winner] += 1
            table.append(PairDay(labels[pair[0]], labels[pair[1]], day, sum(counts.values()), counts["a"], counts["b"], counts["tie"]))
    return table
