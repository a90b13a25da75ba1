"""A/B votes from the Chat tab: each pair's win rate as the votes come in, and a leaderboard of
every model from all votes.

A pair is the same pair whichever side each model sat on: votes are turned to one order
(by model key) before counting. A tie counts half a win for each.
"""

import math
import random
from dataclasses import dataclass
from itertools import groupby

from studio.errors import ChatError
from studio.store import Store

WINNERS = {"a": "A better", "b": "B better", "tie": "tie"}


def record_vote(store: Store, *, a_key: str, a_label: str, b_key: str, b_label: str, winner: str, prompt: str,
                details: dict | None = None) -> int:
    """Store one vote on the last answers of A and B, with what it judged (studio.feedback.items); returns its id."""
    if winner not in WINNERS:
        raise ChatError(f"A vote must be one of {', '.join(WINNERS)}, not '{winner}'.")
    return store.add_vote(a_key=a_key, a_label=a_label, b_key=b_key, b_label=b_label, winner=winner, prompt=prompt, details=details)


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


@dataclass(frozen=True)
class Standing:
    """A model's place on the leaderboard: a Bradley–Terry rating on the Elo scale (1000 is an
    average opponent, +400 means ten times the odds of winning) with a 95 % bootstrap range."""

    key: str
    label: str
    votes: int
    wins: float  # a tie counts half
    rating: float
    low: float
    high: float


def leaderboard(store: Store, resamples: int = 200, seed: int = 0) -> list[Standing]:
    """Every model that got votes, ranked by a Bradley–Terry fit of all votes (ties half a win each).

    The range comes from refitting on votes drawn again with replacement (`resamples` times, the
    same `seed` giving the same range), so few votes show as a wide range.
    """
    votes = [(v["a_key"], v["b_key"], {"a": 1.0, "b": 0.0}.get(v["winner"], 0.5)) for v in store.votes()]
    labels = {}
    for vote in store.votes():
        labels[vote["a_key"]], labels[vote["b_key"]] = vote["a_label"], vote["b_label"]
    if not votes:
        return []
    ratings = _bradley_terry(votes)
    draw = random.Random(seed)
    spread = {key: [] for key in labels}
    for _ in range(resamples):
        fitted = _bradley_terry([draw.choice(votes) for _ in votes])
        for key in labels:
            spread[key].append(fitted.get(key, 1000.0))
    rows = []
    for key, label in labels.items():
        played = [(a, b, s) for a, b, s in votes if key in (a, b)]
        wins = sum(s if a == key else 1 - s for a, b, s in played)
        ordered = sorted(spread[key])
        low, high = ordered[int(0.025 * len(ordered))], ordered[min(len(ordered) - 1, int(0.975 * len(ordered)))]
        rows.append(Standing(key, label, len(played), wins, ratings[key], low, high))
    return sorted(rows, key=lambda row: row.rating, reverse=True)


def _bradley_terry(votes: list[tuple[str, str, float]], rounds: int = 200) -> dict[str, float]:
    """Ratings on the Elo scale from (a, b, a's score) votes, by Hunter's MM updates. Each model also
    plays one virtual tie with an average opponent, so a model that always won still gets a finite rating."""
    keys = sorted({k for a, b, _ in votes for k in (a, b)})
    wins = {k: 0.5 for k in keys}  # the virtual tie's half win
    games: dict[tuple[str, str], int] = {}
    for a, b, score in votes:
        wins[a] += score
        wins[b] += 1 - score
        pair = (a, b) if a < b else (b, a)
        games[pair] = games.get(pair, 0) + 1
    strength = {k: 1.0 for k in keys}
    for _ in range(rounds):
        denominator = {k: 1 / (strength[k] + 1) for k in keys}  # the virtual game
        for (a, b), n in games.items():
            share = n / (strength[a] + strength[b])
            denominator[a] += share
            denominator[b] += share
        strength = {k: wins[k] / denominator[k] for k in keys}
    return {k: 1000 + 400 * math.log10(strength[k]) for k in keys}
