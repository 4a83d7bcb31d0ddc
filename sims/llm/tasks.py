"""Verifiable reasoning tasks from reasoning-gym, in a compact character format.

Problems are generated offline and seeded by the ``reasoning-gym`` package and
scored by its own ``score_answer`` on the answer extracted from a completion.
Each task rewrites the dataset's question as a short prompt and gives a worked
solution for SFT:

=================  ======================  ==================================
task               prompt                  completion (worked solution)
=================  ======================  ==================================
chain_sum          ``4-1-7=``              ``-4``, or with ``cot``: ``4-1=3,3-7=-4#-4``
basic_arithmetic   ``3*(2+5)=``            ``21``
countdown          ``3,5,7:22=``           ``5*3=15,15+7=22#5*3+7`` (exact solver below)
gsm_symbolic       the question (ASCII)    the dataset's ``answer_cot`` (ASCII) ``#`` answer
=================  ======================  ==================================

The final answer is the text after the last ``#`` (the whole completion when
there is none). ``Task.score`` returns reasoning-gym's reward in [0, 1]; it can be
partial (chain_sum credits an answer that contains the right number, countdown
gives 0.05 for using the right numbers); a completion is *correct* when the
score is exactly 1.

Splits. Training problems come from reasoning-gym seeds ``2 * seed * SPAN + i``,
evaluation problems from ``(2 * seed + 1) * SPAN + i`` (``SPAN = 10**8``; the
generators seed item ``i`` with ``seed + i``). Evaluation prompts are distinct,
and every training problem whose prompt is an evaluation prompt is dropped, so
the held-out set is disjoint by content even when the problem space is small.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from typing import Any

from .tokenizer import CharTokenizer

__all__ = [
    "SPAN",
    "ANSWER_MARK",
    "Problem",
    "CountdownSolution",
    "solve_countdown",
    "SPECS",
    "Task",
    "ProblemStream",
    "STREAM_BASE",
    "STREAM_TASK_SPAN",
    "STREAM_SPAN",
    "make_task",
]

SPAN = 10**8
ANSWER_MARK = "#"


@dataclass(frozen=True)
class Problem:
    """One problem: what the model reads, a worked solution, and what the scorer reads."""

    prompt: str
    """Compact prompt text (the tokenizer adds BOS)."""
    completion: str
    """Worked solution ending in the answer (the tokenizer adds EOS); the SFT target."""
    answer: str
    """Reference answer as the dataset states it."""
    entry: dict = field(repr=False, compare=False)
    """The reasoning-gym item (``question``, ``answer``, ``metadata``) its scorer reads."""


# ----------------------------------------------------------------------------- countdown solver


@dataclass(frozen=True)
class CountdownSolution:
    """A way to reach the target: the steps in order and one expression for them."""

    steps: tuple[tuple[int, str, int, int], ...]
    """``(a, op, b, a op b)`` for each combination, in the order performed."""
    expression: str
    """The steps as one arithmetic expression, with only the parentheses it needs."""

    def cot(self) -> str:
        """Steps as text, e.g. ``5*3=15,15+7=22``."""
        return ",".join(f"{a}{op}{b}={c}" for a, op, b, c in self.steps)


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _render(node) -> tuple[str, int]:
    """Expression text of a tree node and its precedence (3 for a number)."""
    if not isinstance(node, tuple):
        return str(node), 3
    op, left, right = node
    (ls, lp), (rs, rp) = _render(left), _render(right)
    if lp < _PREC[op]:
        ls = f"({ls})"
    if rp < _PREC[op] or (rp == _PREC[op] and op in "-/"):
        rs = f"({rs})"
    return f"{ls}{op}{rs}", _PREC[op]


def solve_countdown(numbers, target: int) -> CountdownSolution | None:
    """Exact countdown solver: combine *all* numbers with + - * / to reach ``target``.

    Depth-first search over pairs, remembering the multisets of values that
    cannot reach the target. A first pass keeps every intermediate result a
    positive integer (the usual rules, and the shortest worked solutions); if that
    fails a second pass allows any rational intermediate. The order of search is
    fixed, so the solution is a deterministic function of the input.

    Parameters
    ----------
    numbers : sequence of int
        The numbers, each to be used exactly once (reasoning-gym's scorer asks for all).
    target : int

    Returns
    -------
    CountdownSolution or None
        None when no expression reaches the target.
    """
    numbers = [int(n) for n in numbers]
    if not numbers:
        raise ValueError("numbers: need at least one number")

    def search(items, steps, integer):
        if len(items) == 1:
            return (steps, items[0][1]) if items[0][0] == target else None
        key = tuple(sorted(v for v, _ in items))
        if key in dead:
            return None
        for i, j in combinations(range(len(items)), 2):
            (a, ta), (b, tb) = sorted((items[i], items[j]), key=lambda it: it[0], reverse=True)  # a >= b
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            cands = [(a, ta, "+", b, tb, a + b), (a, ta, "-", b, tb, a - b), (a, ta, "*", b, tb, a * b)]
            if b != 0:
                cands.append((a, ta, "/", b, tb, Fraction(a) / b))
            if not integer:
                cands.append((b, tb, "-", a, ta, b - a))
                if a != 0:
                    cands.append((b, tb, "/", a, ta, Fraction(b) / a))
            for x, tx, op, y, ty, c in cands:
                c = Fraction(c)
                if integer and (c <= 0 or c.denominator != 1):
                    continue
                c = int(c) if c.denominator == 1 else c
                found = search(rest + [(c, (op, tx, ty))], steps + [(x, op, y, c)], integer)
                if found is not None:
                    return found
        dead.add(key)
        return None

    for integer in (True, False):
        dead = set()  # multisets of values known not to reach the target
        found = search([(n, n) for n in numbers], [], integer)
        if found is not None:
            steps, tree = found
            return CountdownSolution(steps=tuple(steps), expression=_render(tree)[0])
    return None


# ----------------------------------------------------------------------------- task specs


def _ascii(text: str) -> str:
    """GSM text as printable ASCII plus newlines."""
    for a, b in (("×", "*"), ("÷", "/"), ("•", "-"), ("€", "$"), ("£", "$"), ("−", "-"), ("#", "")):
        text = text.replace(a, b)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in text if c in _PRINTABLE)


_PRINTABLE = "".join(chr(i) for i in range(32, 127)) + "\n"
_EXPR_RE = re.compile(r"^[0-9+\-*/() ]{1,64}$")


class _Spec:
    """How one reasoning-gym dataset becomes prompts, worked solutions and answers."""

    rg_name: str
    alphabet: str
    presets: dict[str, dict[str, Any]]
    cot_default: bool = False

    def config(self, difficulty):
        return {k: v for k, v in self.presets[difficulty].items() if not k.startswith("_")}

    def to_problem(self, entry, difficulty, cot) -> Problem | None:
        raise NotImplementedError

    def extract_answer(self, completion: str) -> str:
        return completion.rsplit(ANSWER_MARK, 1)[-1].strip()

    def format_ok(self, completion: str) -> bool:
        raise NotImplementedError


class _ChainSum(_Spec):
    rg_name = "chain_sum"
    alphabet = "0123456789+-=,#"
    presets = {
        "tiny": dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1),
        "easy": dict(min_terms=2, max_terms=3, min_digits=1, max_digits=1),
        "medium": dict(min_terms=2, max_terms=3, min_digits=1, max_digits=2),
        "hard": dict(min_terms=2, max_terms=4, min_digits=1, max_digits=3),
    }

    def to_problem(self, entry, difficulty, cot):
        expr = entry["metadata"]["expression"]
        tokens = expr.split()
        completion = entry["answer"]
        if cot and len(tokens) > 3:  # running sums, e.g. 4-1=3,3-7=-4#-4
            acc, steps = int(tokens[0]), []
            for op, x in zip(tokens[1::2], tokens[2::2]):
                new = acc + int(x) if op == "+" else acc - int(x)
                steps.append(f"{acc}{op}{x}={new}")
                acc = new
            completion = ",".join(steps) + ANSWER_MARK + entry["answer"]
        return Problem(expr.replace(" ", "") + "=", completion, entry["answer"], entry)

    def format_ok(self, completion):
        return re.fullmatch(r"(-?\d+[+-]\d+=-?\d+(,-?\d+[+-]\d+=-?\d+)*#)?-?\d+", completion) is not None


class _BasicArithmetic(_Spec):
    # allow_parentheses=True takes the generator's path that evaluates with the usual
    # precedence; its other path evaluates left to right whatever the operators
    rg_name = "basic_arithmetic"
    alphabet = "0123456789+-*/()=,#"
    presets = {
        "tiny": dict(
            min_terms=2,
            max_terms=2,
            min_digits=1,
            max_digits=1,
            operators=("+", "-", "*"),
            allow_parentheses=True,
            allow_negation=False,
            whitespace="single",
        ),
        "easy": dict(
            min_terms=2,
            max_terms=3,
            min_digits=1,
            max_digits=1,
            operators=("+", "-", "*"),
            allow_parentheses=True,
            allow_negation=False,
            whitespace="single",
        ),
        "medium": dict(
            min_terms=2,
            max_terms=3,
            min_digits=1,
            max_digits=2,
            operators=("+", "-", "*", "/"),
            allow_parentheses=True,
            allow_negation=False,
            whitespace="single",
        ),
    }

    def to_problem(self, entry, difficulty, cot):
        expr = entry["metadata"]["expression"].replace(" ", "")
        return Problem(expr + "=", entry["answer"], entry["answer"], entry)

    def format_ok(self, completion):
        return re.fullmatch(r"-?\d+", completion) is not None


class _Countdown(_Spec):
    rg_name = "countdown"
    alphabet = "0123456789+-*/()=,:#"
    cot_default = True
    presets = {
        "tiny": dict(min_numbers=3, max_numbers=3, min_value=1, max_value=9, min_target=1, max_target=30),
        "small": dict(min_numbers=3, max_numbers=3, min_value=1, max_value=12, min_target=1, max_target=60),
        "easy": dict(min_numbers=3, max_numbers=3, min_value=1, max_value=20, min_target=10, max_target=100),
        "medium": dict(min_numbers=4, max_numbers=4, min_value=1, max_value=25, min_target=10, max_target=200),
    }

    def to_problem(self, entry, difficulty, cot):
        md = entry["metadata"]
        sol = solve_countdown(md["numbers"], md["target"])
        if sol is None:  # the generator's own expression reaches it, so this does not happen
            return None
        prompt = ",".join(map(str, md["numbers"])) + f":{md['target']}="
        completion = sol.cot() + ANSWER_MARK + sol.expression if cot else sol.expression
        return Problem(prompt, completion, entry["answer"], entry)

    def format_ok(self, completion):
        num = r"\d+(/\d+)?"  # a fraction can appear when no all-integer route exists
        step = rf"{num}[-+*/]{num}={num}"
        return re.fullmatch(rf"({step}(,{step})*#)?[0-9+\-*/()]+", completion) is not None


class _GSMSymbolic(_Spec):
    rg_name = "gsm_symbolic"
    alphabet = _PRINTABLE
    cot_default = True
    presets = {"easy": dict(_max_chars=400), "full": dict(_max_chars=10**6)}
    _SUFFIX = " Give the result as your final answer. Do not include units."

    def to_problem(self, entry, difficulty, cot):
        prompt = _ascii(entry["question"].removesuffix(self._SUFFIX)).strip()
        work = entry["metadata"]["answer_cot"].split("####")[0]
        work = re.sub(
            r"[ \t]+", " ", "\n".join(line.strip() for line in _ascii(work).strip().splitlines() if line.strip())
        )
        completion = work + ANSWER_MARK + entry["answer"] if cot else entry["answer"]
        if len(prompt) + len(completion) > self.presets[difficulty]["_max_chars"]:
            return None
        return Problem(prompt, completion, entry["answer"], entry)

    def format_ok(self, completion):
        return re.search(r"#-?\d+(\.\d+)?$", completion) is not None


SPECS: dict[str, _Spec] = {s.rg_name: s for s in (_ChainSum(), _BasicArithmetic(), _Countdown(), _GSMSymbolic())}


# ----------------------------------------------------------------------------- the task


class Task:
    """Training and held-out problems of one reasoning-gym task, a tokenizer and a scorer.

    Build with :func:`make_task`.

    Attributes
    ----------
    name, difficulty, seed : str, str, int
    cot : bool
        Whether completions carry a worked solution before the answer.
    train, eval : list of Problem
        Training problems (may repeat) and distinct held-out problems; no
        training prompt is an evaluation prompt.
    tokenizer : CharTokenizer
        Over the task's fixed alphabet.
    max_prompt_len, max_completion_len : int
        Longest prompt and worked solution in characters (without BOS / EOS).
    """

    def __init__(self, name, spec, difficulty, seed, cot, train, eval, scorer):
        self.name, self.difficulty, self.seed, self.cot = name, difficulty, seed, cot
        self._spec, self._scorer = spec, scorer
        self.train, self.eval = train, eval
        self.tokenizer = CharTokenizer(spec.alphabet)
        for p in train[:1] + eval:  # every character is in the alphabet
            self.tokenizer.encode(p.prompt + p.completion)
        self.max_prompt_len = max(len(p.prompt) for p in train + eval)
        self.max_completion_len = max(len(p.completion) for p in train + eval)

    @property
    def max_new_tokens(self) -> int:
        """Token budget for sampling: the longest worked solution plus EOS."""
        return self.max_completion_len + 1

    @property
    def block_size(self) -> int:
        """Sequence length a model needs: BOS, longest prompt, sampling budget."""
        return 1 + self.max_prompt_len + self.max_new_tokens

    def extract_answer(self, completion: str) -> str:
        """The final answer in a completion: the text after the last ``#``, stripped."""
        return self._spec.extract_answer(completion)

    def score(self, completion: str, entry: dict | Problem) -> float:
        """reasoning-gym's reward for the answer extracted from ``completion``, in [0, 1].

        Parameters
        ----------
        completion : str
            Decoded completion (without EOS).
        entry : dict or Problem
            The reasoning-gym item (``Problem.entry``) or the problem holding it.
        """
        if isinstance(entry, Problem):
            entry = entry.entry
        answer = self.extract_answer(completion)
        if self.name == "countdown" and (not _EXPR_RE.fullmatch(answer or " ") or "**" in answer):
            answer = ""  # the scorer parses with sympy: hand it only plain arithmetic, no powers
        return float(self._scorer.score_answer(answer, entry))

    def is_correct(self, completion: str, entry: dict | Problem) -> bool:
        """Whether the score is exactly 1."""
        return self.score(completion, entry) == 1.0

    def format_score(self, completion: str) -> float:
        """1.0 when the completion has the task's format (worked steps, ``#``, answer), else 0.0."""
        return float(self._spec.format_ok(completion))

    def reward(self, completion: str, entry: dict | Problem, format_weight: float = 0.0) -> float:
        """``(1 - w) * score + w * format_score`` with ``w = format_weight`` in [0, 1]."""
        if not 0.0 <= format_weight <= 1.0:
            raise ValueError(f"format_weight: must lie in [0, 1], got {format_weight}")
        s = self.score(completion, entry)
        return s if format_weight == 0.0 else (1 - format_weight) * s + format_weight * self.format_score(completion)

    def stream(self, seed: int) -> "ProblemStream":
        """Fresh training problems for an RL run with seed ``seed``: see :class:`ProblemStream`."""
        return ProblemStream(self, seed)

    def __repr__(self):
        return (
            f"Task({self.name!r}, difficulty={self.difficulty!r}, seed={self.seed}, cot={self.cot}, "
            f"train={len(self.train)}, eval={len(self.eval)})"
        )


class ProblemStream:
    """Fresh training problems, generated on demand, that never repeat within a run.

    Item ``i`` of the stream of RL seed ``s`` is reasoning-gym's item seeded
    ``STREAM_BASE + task_seed * STREAM_TASK_SPAN + s * STREAM_SPAN + i``, a range
    disjoint from the SFT training pool and the held-out problems (both below
    ``2 * (task_seed + 1) * SPAN``). An item is skipped when its prompt is a
    held-out prompt, a prompt of the SFT training pool, a prompt this stream has
    already served, or when it is longer than the task's model can read (prompt
    or worked solution longer than ``Task.max_prompt_len`` /
    ``Task.max_completion_len``). So every problem a run trains on is new to the
    model and to the run. The stream is a deterministic function of the task and
    ``s``: :meth:`skip` replays it to where a resumed run left off. A small problem
    space runs out: :meth:`take` then raises RuntimeError saying so, rather than
    repeat a problem.

    Parameters
    ----------
    task : Task
    seed : int
        RL seed, ``0 <= seed < STREAM_TASK_SPAN // STREAM_SPAN``.
    """

    CHUNK = 1024
    BARREN_CHUNKS = 8
    """Chunks in a row without a new problem after which the problem space counts as spent (an error)."""

    def __init__(self, task: "Task", seed: int):
        limit = STREAM_TASK_SPAN // STREAM_SPAN
        if not isinstance(seed, int) or not 0 <= seed < limit:
            raise ValueError(f"seed: a problem stream needs an integer seed in [0, {limit}), got {seed!r}")
        self.task, self.seed = task, seed
        self.base = STREAM_BASE + task.seed * STREAM_TASK_SPAN + seed * STREAM_SPAN
        self._exclude = {p.prompt for p in task.eval} | {p.prompt for p in task.train}
        self._items, self._next_item, self.served, self._barren = [], 0, 0, 0

    def _refill(self) -> None:
        import reasoning_gym as rg

        spec, task = self.task._spec, self.task
        if self._next_item + self.CHUNK > STREAM_SPAN or self._barren >= self.BARREN_CHUNKS:
            raise RuntimeError(
                f"the fresh {task.name}/{task.difficulty} problems of seed {self.seed} ran out after {self.served} "
                f"(the last {self._barren * self.CHUNK} generated items were all held-out, SFT-pool or already served "
                "prompts): use a harder difficulty, a smaller SFT train_size, or fewer RL steps"
            )
        ds = rg.create_dataset(spec.rg_name, seed=self.base + self._next_item, size=self.CHUNK, **spec.config(task.difficulty))
        self._next_item += self.CHUNK
        added = False
        for i in range(self.CHUNK):
            p = spec.to_problem(ds[i], task.difficulty, task.cot)
            if (
                p is None
                or p.prompt in self._exclude
                or len(p.prompt) > task.max_prompt_len
                or len(p.completion) > task.max_completion_len
            ):
                continue
            self._exclude.add(p.prompt)
            self._items.append(p)
            added = True
        self._barren = 0 if added else self._barren + 1

    def take(self, n: int) -> list[Problem]:
        """The next ``n`` problems."""
        while len(self._items) < n:
            self._refill()
        out, self._items = self._items[:n], self._items[n:]
        self.served += n
        return out

    def skip(self, n: int) -> None:
        """Advance past ``n`` problems (what a resumed run has already trained on)."""
        self.take(n)


STREAM_BASE = 10**15
"""First reasoning-gym seed of the fresh-problem streams (far above the pool and held-out ranges)."""
STREAM_TASK_SPAN = 10**12
"""Seeds reserved per task seed for its streams."""
STREAM_SPAN = 10**7
"""Seeds reserved per RL seed (items one stream can draw)."""


def make_task(
    name: str,
    *,
    seed: int = 0,
    size: int = 10_000,
    eval_size: int = 200,
    difficulty: str = "easy",
    cot: bool | None = None,
) -> Task:
    """Generate a task's training and held-out problems.

    Parameters
    ----------
    name : str
        ``chain_sum``, ``basic_arithmetic``, ``countdown`` or ``gsm_symbolic``.
    seed : int
        Task seed (>= 0); fixes both splits (see the module docstring).
    size : int
        Number of training problems (>= 1); they may repeat when the problem space is small.
    eval_size : int
        Number of distinct held-out problems (>= 1).
    difficulty : str
        Preset: chain_sum ``tiny|easy|medium|hard``; basic_arithmetic ``tiny|easy|medium``;
        countdown ``tiny|small|easy|medium``; gsm_symbolic ``easy`` (prompt + solution <= 400 characters) or ``full``.
    cot : bool, optional
        Worked steps before the answer; default True for countdown and gsm_symbolic,
        False for the arithmetic tasks.

    Returns
    -------
    Task

    Raises
    ------
    ValueError
        For an unknown name or difficulty, bad sizes, or a problem space too small
        for ``eval_size`` distinct problems.
    """
    import reasoning_gym as rg

    if name not in SPECS:
        raise ValueError(f"name: unknown task {name!r}; choose from {sorted(SPECS)}")
    spec = SPECS[name]
    if difficulty not in spec.presets:
        raise ValueError(f"difficulty: {name} has no {difficulty!r}; choose from {sorted(spec.presets)}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    if size < 1:
        raise ValueError(f"size: must be >= 1, got {size}")
    if eval_size < 1:
        raise ValueError(f"eval_size: must be >= 1, got {eval_size}")
    cot = spec.cot_default if cot is None else bool(cot)

    def generate(rg_seed, n, exclude, distinct, tries):
        ds = rg.create_dataset(spec.rg_name, seed=rg_seed, size=tries, **spec.config(difficulty))
        out, seen = [], set()
        for i in range(tries):
            p = spec.to_problem(ds[i], difficulty, cot)
            if p is None or p.prompt in exclude or (distinct and p.prompt in seen):
                continue
            seen.add(p.prompt)
            out.append(p)
            if len(out) == n:
                break
        return out, ds

    eval_problems, scorer = generate((2 * seed + 1) * SPAN, eval_size, set(), True, 20 * eval_size + 100)
    if len(eval_problems) < eval_size:
        raise ValueError(
            f"eval_size: found only {len(eval_problems)} distinct {name}/{difficulty} problems, asked for {eval_size}"
        )
    train, _ = generate(2 * seed * SPAN, size, {p.prompt for p in eval_problems}, False, 4 * size + 1000)
    if len(train) < size:
        raise ValueError(f"size: only {len(train)} training problems remain outside the held-out set")
    return Task(name, spec, difficulty, seed, cot, train, eval_problems, scorer)
