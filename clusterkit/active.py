"""Active selection of pairs to ask about (ADC, Sun et al. 2022, section 3.3), oracles, and
the answer log.

Every query strategy has the same **ask/tell** interface, so a person clicking in
``widgets.PairLabeler``, a simulated :class:`LabelOracle` and a papermill run all drive the
same object::

    strategy = ADCSelection(n, rounds=5, seed=0)     # round 0: k random pairs (Alg. 2)
    pairs = strategy.propose(200)                    # (200, 2) int64, never asked before
    strategy.tell(pairs, oracle(pairs))              # True = same cluster, False = not, None = skip
    ... train on strategy.constraints ...
    strategy.next_round(q, z)                        # the model's (n, k) q and (n, d) z

Strategies: :class:`ADCSelection` (Alg. 1: per predicted cluster, the most central member
paired with the least central ones, inside the round's disjoint subset),
:class:`RandomPairs` (ADC-random) and :class:`UncertainPairs` (ADC-Uncertain: the farthest
pairs inside a cluster). Answers become must-link (same) / cannot-link (different)
constraints; an answer that contradicts earlier ones (a cannot-link inside a must-link
closure, or a must-link across a cannot-link) is **not** added: it is recorded in
``strategy.conflicts_`` and shown by the widget.

:class:`AnswerLog` appends every event (proposals, answers, skips, undos, round ends) to a
JSON-lines file as it happens, flushed and fsynced, so a crashed kernel loses no answer;
``strategy.replay(path)`` rebuilds a strategy, with its open round, from that file.

This module imports only numpy (and clusterkit.constraints).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterkit.constraints import Constraints

__all__ = ["AnswerLog", "LabelOracle", "QueryStrategy", "ADCSelection", "RandomPairs",
           "UncertainPairs", "make_strategy", "STRATEGIES"]


# ---------------------------------------------------------------------------- oracle
class LabelOracle:
    """A simulated annotator that answers "same class?" from the true labels.

    y: (n,) int labels. error_rate: probability that an answer is flipped (a person's
    mistake), drawn independently per question from ``np.random.default_rng(seed)``.
    ``oracle(pairs)`` -> (m,) bool, True = same.
    """

    def __init__(self, y: Any, error_rate: float = 0.0, seed: int = 0):
        self.y = np.asarray(y).astype(np.int64).ravel()
        if not 0.0 <= float(error_rate) <= 1.0:
            raise ValueError(f"error_rate is a probability in [0, 1]; got {error_rate!r}")
        self.error_rate = float(error_rate)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.asked = 0
        self.wrong = 0

    def __call__(self, pairs: Any) -> np.ndarray:
        p = _check_pairs(pairs, len(self.y))
        same = self.y[p[:, 0]] == self.y[p[:, 1]]
        flip = self._rng.random(len(p)) < self.error_rate
        self.asked += len(p)
        self.wrong += int(flip.sum())
        return same ^ flip

    answer = __call__

    def __repr__(self) -> str:
        return f"LabelOracle(n={len(self.y)}, error_rate={self.error_rate})"


# ---------------------------------------------------------------------------- the log
class AnswerLog:
    """Append-only JSON-lines file of labelling events; each write is flushed and fsynced.

    One JSON object per line with an ``event`` key: ``propose`` (round, strategy, pairs),
    ``answer`` (round, i, j, answer in same/different/skip, status ok/conflict/skip,
    conflicts, source, time), ``undo`` (round, i, j) and ``round`` (the new round index).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as f:  # a torn last line (crash) gets closed first
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        """All events in order ([] when the file does not exist yet). Torn lines (a crash
        in the middle of a write) are skipped; ``self.torn`` counts them."""
        self.torn = 0
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                self.torn += 1
        return out

    def __repr__(self) -> str:
        return f"AnswerLog({str(self.path)!r})"


# ---------------------------------------------------------------------------- helpers
def _check_pairs(pairs: Any, n: int) -> np.ndarray:
    p = np.asarray(pairs)
    if p.size == 0:
        return np.empty((0, 2), np.int64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pairs have shape {p.shape}; pass (m, 2) sample indices")
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pairs have dtype {p.dtype}; pass integer sample indices")
    p = p.astype(np.int64)
    if (p < 0).any() or (p >= n).any():
        raise ValueError(f"pairs hold indices outside [0, {n}); indices are sample positions")
    if (p[:, 0] == p[:, 1]).any():
        raise ValueError("a pair needs two different samples; drop the pairs (i, i)")
    return p


def _codes(p: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(p[:, 0], p[:, 1]) * n + np.maximum(p[:, 0], p[:, 1])


def _word(a: Any) -> str:
    if a is None:
        return "skip"
    if isinstance(a, str):
        if a not in ("same", "different", "skip"):
            raise ValueError(f"an answer is True/'same', False/'different' or None/'skip'; "
                             f"got {a!r}")
        return a
    return "same" if bool(a) else "different"


def _split_budget(k: int, sizes: np.ndarray, fill: bool) -> np.ndarray:
    """Alg. 1 line 5: b_p = floor(k n_p / Σ n_p); with ``fill`` the k - Σ b_p left over go
    to the largest remainders (ties: larger clusters first), so that Σ b_p = k."""
    total = int(sizes.sum())
    if total == 0:
        return np.zeros_like(sizes)
    exact = k * sizes / total
    b = np.floor(exact).astype(np.int64)
    if fill:
        left = k - int(b.sum())
        order = np.lexsort((-sizes, -(exact - b)))
        b[order[:left]] += 1
    return b


# ---------------------------------------------------------------------------- strategies
class QueryStrategy:
    """Ask/tell bookkeeping shared by every strategy; subclasses implement ``_select``.

    n: number of samples; rounds: T, the number of rounds (the data is split into T
    disjoint random subsets for ADC's rule); seed: all randomness; log: a path or
    :class:`AnswerLog` to append events to (None: no file); constraints: answers already
    known (e.g. from an earlier session), as a :class:`~clusterkit.constraints.Constraints`.

    State: ``round`` (0-based; round 0 draws random pairs), ``q`` / ``z`` (the model's
    latest soft assignments (n, k) and embedding (n, d)), ``pending`` (proposed pairs not
    answered yet, (m, 2)), ``answers`` (list of dicts, one per accepted, conflicting or
    skipped answer), ``constraints``, ``conflicts_`` (the answers that were refused).
    """

    name = "base"

    def __init__(self, n: int, *, rounds: int = 5, seed: int = 0,
                 log: str | os.PathLike | AnswerLog | None = None,
                 constraints: Constraints | None = None, fill: bool = True):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"n must be the number of samples (an integer >= 2); got {n!r}")
        if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
            raise ValueError(f"rounds must be a positive integer; got {rounds!r}")
        self.n = int(n)
        self.rounds = int(rounds)
        self.seed = int(seed)
        self.fill = bool(fill)
        self.log = None if log is None else (log if isinstance(log, AnswerLog)
                                             else AnswerLog(log))
        self._rng = np.random.default_rng([self.seed, 17])
        self.subsets = np.array_split(np.random.default_rng(self.seed).permutation(self.n),
                                      self.rounds)
        self.round = 0
        self.q: np.ndarray | None = None
        self.z: np.ndarray | None = None
        self.pending = np.empty((0, 2), np.int64)
        self.reasons: dict[int, dict] = {}
        self.answers: list[dict] = []
        self.conflicts_: list[dict] = []
        self._asked: set[int] = set()
        self._base = constraints if constraints is not None else Constraints.from_pairs(self.n)
        if self._base.n != self.n:
            raise ValueError(f"the constraints are over {self._base.n} samples, not n={self.n}")
        for p in self._base.pairs():
            self._asked.add(int(p[0]) * self.n + int(p[1]))
        self.constraints = self._base
        self._replaying = False

    # -- ask --------------------------------------------------------------------------
    def propose(self, k: int) -> np.ndarray:
        """k new pairs to ask about, (k, 2) int64: none asked or proposed before.

        Raises ValueError when k is not a positive integer or larger than what the pool of
        unasked pairs can supply.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k (pairs to propose) must be a positive integer; got {k!r}")
        k = int(k)
        if self.round == 0 or self.q is None:
            pool = self.n * (self.n - 1) // 2 - len(self._asked)
            if k > pool:
                raise ValueError(f"only {pool} unasked pairs are left; ask for at most {pool} "
                                 "(the budget is larger than the pool)")
            pairs, why = self._random(k), None
        else:
            pairs, why = self._select(k)
        if len(pairs) < k and (self.fill or self.round == 0 or self.q is None):
            raise ValueError(f"only {len(pairs)} unasked pairs are available for round "
                             f"{self.round} ({self.name}); ask for at most {len(pairs)} "
                             "(the budget is larger than the pool)")
        codes = _codes(pairs, self.n)
        self._asked.update(codes.tolist())
        self.pending = np.concatenate([self.pending, pairs])
        for r, c in enumerate(codes.tolist()):
            self.reasons[c] = {"strategy": self.name if why is not None else "random",
                               "round": self.round, **(why[r] if why is not None else {})}
        self._write({"event": "propose", "round": self.round, "strategy": self.name,
                     "pairs": pairs.tolist()})
        return pairs

    def _random(self, k: int) -> np.ndarray:
        """k uniformly random unasked pairs of distinct samples (vectorised rejection)."""
        n = self.n
        if k > n * (n - 1) // 2 - len(self._asked):
            return np.empty((0, 2), np.int64)
        got = np.empty((0, 2), np.int64)
        asked = np.fromiter(self._asked, np.int64, len(self._asked))
        while len(got) < k:
            m = 2 * (k - len(got)) + 16
            i = self._rng.integers(0, n, m)
            j = self._rng.integers(0, n - 1, m)
            j += j >= i
            cand = np.concatenate([got, np.stack([i, j], 1)])
            c = _codes(cand, n)
            _, first = np.unique(c, return_index=True)
            keep = np.sort(first)
            keep = keep[~np.isin(c[keep], asked)]
            got = cand[keep]
        return got[:k]

    def _select(self, k: int) -> tuple[np.ndarray, list[dict]]:
        raise NotImplementedError

    def explain(self, pair: Any) -> dict:
        """Why a proposed pair was chosen: strategy, round, cluster, q of both points, role."""
        i, j = int(pair[0]), int(pair[1])
        code = min(i, j) * self.n + max(i, j)
        out = dict(self.reasons.get(code, {"strategy": "given"}))
        if self.q is not None:
            out.setdefault("cluster_i", int(self.q[i].argmax()))
            out.setdefault("cluster_j", int(self.q[j].argmax()))
            out["q_i"] = float(self.q[i].max())
            out["q_j"] = float(self.q[j].max())
        return out

    # -- tell -------------------------------------------------------------------------
    def tell(self, pairs: Any, answers: Any, *, source: str = "oracle") -> list[str]:
        """Record answers: True/"same" (must-link), False/"different" (cannot-link) or
        None/"skip". Returns one status per pair: "ok", "conflict" (refused: it contradicts
        earlier answers; see ``conflicts_``) or "skip". Each answer is logged at once."""
        p = _check_pairs(pairs, self.n)
        ans = list(answers) if not isinstance(answers, np.ndarray) else answers.tolist()
        if len(ans) != len(p):
            raise ValueError(f"{len(p)} pairs but {len(ans)} answers; give one answer per pair")
        words = [_word(a) for a in ans]
        # fast path: every answer consistent -> one vectorised extend
        status: list[str] = []
        is_same = np.array([w == "same" for w in words])
        is_diff = np.array([w == "different" for w in words])
        try:
            new = self.constraints.extend(ml=p[is_same] if is_same.any() else (),
                                          cl=p[is_diff] if is_diff.any() else ())
            ok_all = True
        except ValueError:
            ok_all = False
        if ok_all:
            self.constraints = new
            for (i, j), w in zip(p.tolist(), words, strict=True):
                status.append(self._record(i, j, w, "skip" if w == "skip" else "ok", [],
                                           source))
            return status
        for (i, j), w in zip(p.tolist(), words, strict=True):  # slow path: one by one
            status.append(self._tell_one(i, j, w, source))
        return status

    def _tell_one(self, i: int, j: int, w: str, source: str) -> str:
        if w == "skip":
            return self._record(i, j, w, "skip", [], source)
        clash = self.constraints.conflicts(i, j, w == "same")
        if clash:
            return self._record(i, j, w, "conflict", [list(c) for c in clash], source)
        pair = [(i, j)]
        self.constraints = (self.constraints.extend(ml=pair) if w == "same"
                            else self.constraints.extend(cl=pair))
        return self._record(i, j, w, "ok", [], source)

    def _record(self, i: int, j: int, w: str, status: str, clash: list, source: str) -> str:
        rec = {"event": "answer", "round": self.round, "i": i, "j": j, "answer": w,
               "status": status, "conflicts": clash, "source": source,
               "time": round(time.time(), 3)}
        self.answers.append(rec)
        if status == "conflict":
            self.conflicts_.append(rec)
        code = min(i, j) * self.n + max(i, j)
        self._asked.add(code)
        if len(self.pending):
            c = _codes(self.pending, self.n)
            hit = np.flatnonzero(c == code)
            if len(hit):
                self.pending = np.delete(self.pending, hit[0], axis=0)
        self._write(rec)
        return status

    def undo(self) -> dict | None:
        """Take back the last answer of this round (it returns to the front of ``pending``).
        Returns the removed answer, or None when this round has no answer to undo."""
        if not self.answers or self.answers[-1]["round"] != self.round:
            return None
        rec = self.answers.pop()
        if rec["status"] == "conflict":
            self.conflicts_.remove(rec)
        if rec["status"] == "ok":
            self._rebuild()
        self.pending = np.concatenate([np.array([[rec["i"], rec["j"]]], np.int64),
                                       self.pending])
        self._write({"event": "undo", "round": self.round, "i": rec["i"], "j": rec["j"]})
        return rec

    def _rebuild(self) -> None:
        ok = [a for a in self.answers if a["status"] == "ok"]
        ml = [(a["i"], a["j"]) for a in ok if a["answer"] == "same"]
        cl = [(a["i"], a["j"]) for a in ok if a["answer"] == "different"]
        self.constraints = self._base.extend(ml=ml, cl=cl)

    # -- rounds -----------------------------------------------------------------------
    def next_round(self, q: Any = None, z: Any = None) -> int:
        """Start the next round with the retrained model's soft assignments q (n, k) and
        embedding z (n, d). Unanswered proposals of the finished round are dropped (they
        stay "asked", so they are not proposed again). Returns the new round index."""
        if q is not None:
            q = np.asarray(q, dtype=np.float32)
            if q.ndim != 2 or q.shape[0] != self.n:
                raise ValueError(f"q has shape {q.shape}; pass the (n={self.n}, k) soft "
                                 "assignments of the retrained model")
            if not np.isfinite(q).all():
                raise ValueError("q has NaN or infinite values")
        if z is not None:
            z = np.asarray(z, dtype=np.float32)
            if z.ndim != 2 or z.shape[0] != self.n:
                raise ValueError(f"z has shape {z.shape}; pass the (n={self.n}, d) embedding")
        self.q, self.z = q, z
        self.round += 1
        self.pending = np.empty((0, 2), np.int64)
        self._write({"event": "round", "round": self.round})
        return self.round

    @property
    def n_answered(self) -> int:
        """Answered pairs (accepted or refused), skips not counted."""
        return sum(a["status"] != "skip" for a in self.answers)

    def round_answers(self, r: int | None = None) -> list[dict]:
        r = self.round if r is None else r
        return [a for a in self.answers if a["round"] == r]

    # -- persistence --------------------------------------------------------------------
    def _write(self, rec: dict) -> None:
        if self.log is not None and not self._replaying:
            self.log.append(rec)

    def replay(self, path: str | os.PathLike | AnswerLog | None = None) -> QueryStrategy:
        """Rebuild this (fresh) strategy's answers and open round from a log file; later
        events are appended to the same file. Returns self.

        The model's q is not in the log: after a restart the open round's proposals
        (``pending``) can be answered at once; call ``next_round(q, z)`` after training."""
        log = self.log if path is None else (path if isinstance(path, AnswerLog)
                                             else AnswerLog(path))
        if log is None:
            raise ValueError("give the log's path: strategy.replay('answers.jsonl')")
        if self.answers or self.round:
            raise ValueError("replay needs a fresh strategy (no answers, round 0)")
        self.log = log
        self._replaying = True
        try:
            for ev in log.read():
                kind = ev.get("event")
                if kind == "propose":
                    p = np.asarray(ev["pairs"], np.int64).reshape(-1, 2)
                    self.round = int(ev["round"])
                    self.pending = np.concatenate([self.pending, p])
                    codes = _codes(p, self.n).tolist()
                    self._asked.update(codes)
                    for c in codes:
                        self.reasons[c] = {"strategy": ev.get("strategy"), "round": self.round}
                elif kind == "answer":
                    self.round = int(ev["round"])
                    self._tell_one(int(ev["i"]), int(ev["j"]), ev["answer"],
                                   ev.get("source", "oracle"))
                elif kind == "undo":
                    self.undo()
                elif kind == "round":
                    self.round = int(ev["round"])
                    self.pending = np.empty((0, 2), np.int64)
        finally:
            self._replaying = False
        return self

    def __repr__(self) -> str:
        c = self.constraints
        return (f"{type(self).__name__}(n={self.n}, round={self.round}/{self.rounds}, "
                f"answered={self.n_answered}, ml={c.n_ml}, cl={c.n_cl}, "
                f"conflicts={len(self.conflicts_)}, pending={len(self.pending)})")


class RandomPairs(QueryStrategy):
    """ADC-random: every round draws k uniformly random unasked pairs of the whole data."""

    name = "random"

    def _select(self, k: int) -> tuple[np.ndarray, list[dict]]:
        p = self._random(k)
        return p, [{} for _ in range(len(p))]


class _PerCluster(QueryStrategy):
    """Round t >= 1 works inside subset t, per predicted cluster, with Alg. 1's budget."""

    def _select(self, k: int) -> tuple[np.ndarray, list[dict]]:
        if self.round >= self.rounds:
            raise ValueError(f"all {self.rounds} rounds of this strategy are used (round "
                             f"{self.round}); make a strategy with more rounds")
        sub = self.subsets[self.round]
        lab = self.q[sub].argmax(1)
        c = self.q.shape[1]
        members = [sub[lab == p] for p in range(c)]
        sizes = np.array([len(m) for m in members], np.int64)
        budget = _split_budget(k, sizes, self.fill)
        asked = np.fromiter(self._asked, np.int64, len(self._asked))
        cands = [self._candidates(p, members[p], asked) for p in range(c)]
        cap = np.array([len(x[0]) for x in cands], np.int64)
        take = np.minimum(budget, cap)
        if self.fill:  # a cluster short of candidates passes its budget on
            short = int(budget.sum() - take.sum())
            for p in np.argsort(-sizes, kind="stable"):
                if short <= 0:
                    break
                extra = min(short, int(cap[p] - take[p]))
                take[p] += extra
                short -= extra
        pairs, why = [], []
        for p in range(c):
            if take[p]:
                pp, info = cands[p]
                pairs.append(pp[:take[p]])
                why += [{"cluster": p, "role": info[r], "budget": int(budget[p])}
                        for r in range(take[p])]
        out = np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64)
        return out, why

    def _candidates(self, p: int, members: np.ndarray, asked: np.ndarray):
        raise NotImplementedError


class ADCSelection(_PerCluster):
    """ADC's rule (Alg. 1). Round 0: k random pairs. Round t >= 1, inside subset t: per
    predicted cluster p, budget b_p = floor(k n_p / Σ n_p) (with ``fill``, the remainder
    goes to the largest fractions so that exactly k pairs come out); members sorted by
    q_ip descending; the most central member is paired with each of the b_p least central
    ones, **centre first** in each returned pair. Pairs already asked are skipped."""

    name = "adc"

    def _candidates(self, p: int, members: np.ndarray, asked: np.ndarray):
        if len(members) < 2:
            return np.empty((0, 2), np.int64), []
        order = members[np.argsort(-self.q[members, p], kind="stable")]
        centre, rest = order[0], order[1:][::-1]  # least central first
        pairs = np.stack([np.full(len(rest), centre), rest], 1)
        keep = ~np.isin(_codes(pairs, self.n), asked)
        pairs = pairs[keep]
        return pairs, ["centre vs boundary"] * len(pairs)


class UncertainPairs(_PerCluster):
    """ADC-Uncertain (section 4.4): inside subset t, per predicted cluster, the pairs of
    members farthest apart in the embedding z (the most uncertain "same?" questions)."""

    name = "uncertain"

    def _candidates(self, p: int, members: np.ndarray, asked: np.ndarray):
        if self.z is None:
            raise ValueError("UncertainPairs needs the embedding: next_round(q, z)")
        m = len(members)
        if m < 2:
            return np.empty((0, 2), np.int64), []
        zz = self.z[members]
        d = ((zz[:, None, :] - zz[None, :, :]) ** 2).sum(-1)
        a, b = np.triu_indices(m, 1)
        order = np.argsort(-d[a, b], kind="stable")
        pairs = np.stack([members[a[order]], members[b[order]]], 1)
        pairs = pairs[~np.isin(_codes(pairs, self.n), asked)]
        return pairs, ["farthest apart"] * len(pairs)


STRATEGIES = {"adc": ADCSelection, "random": RandomPairs, "uncertain": UncertainPairs}


def make_strategy(name: str, n: int, **kw: Any) -> QueryStrategy:
    """``"adc"``, ``"random"`` or ``"uncertain"`` -> a fresh strategy over n samples."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](n, **kw)
