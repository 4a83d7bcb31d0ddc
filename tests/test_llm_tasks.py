"""reasoning-gym tasks: formats, scoring of known right and wrong answers, splits, the countdown solver."""

import signal
from fractions import Fraction

import pytest

from sims.llm.tasks import make_task, solve_countdown


@pytest.fixture(scope="module")
def tasks():
    return {
        "chain_sum": make_task("chain_sum", seed=0, size=300, eval_size=40, difficulty="easy"),
        "chain_sum_cot": make_task("chain_sum", seed=0, size=50, eval_size=20, difficulty="medium", cot=True),
        "basic_arithmetic": make_task("basic_arithmetic", seed=0, size=50, eval_size=20, difficulty="easy"),
        "countdown": make_task("countdown", seed=0, size=50, eval_size=20, difficulty="tiny"),
        "gsm_symbolic": make_task("gsm_symbolic", seed=0, size=20, eval_size=10, difficulty="easy"),
    }


def test_worked_solutions_score_one_and_are_well_formed(tasks):
    for task in tasks.values():
        for p in task.train[:20] + task.eval:
            assert task.score(p.completion, p) == 1.0, (task.name, p)
            assert task.format_score(p.completion) == 1.0, (task.name, p.completion)
            assert task.extract_answer(p.completion).replace(" ", "") != ""
            task.tokenizer.encode(p.prompt + p.completion)  # in the alphabet
        assert task.block_size == 1 + task.max_prompt_len + task.max_completion_len + 1


def test_known_right_and_wrong_answers():
    cs = make_task("chain_sum", seed=0, size=5, eval_size=5, difficulty="easy")
    p = cs.eval[0]
    right = int(eval(p.prompt[:-1]))
    assert cs.score(str(right), p) == 1.0 and cs.is_correct(f"1+1=2#{right}", p)
    assert cs.score(str(right + 1), p) < 1.0
    assert cs.score("", p) == 0.0
    cd = make_task("countdown", seed=0, size=5, eval_size=5, difficulty="tiny")
    p = cd.eval[0]
    nums, target = p.entry["metadata"]["numbers"], p.entry["metadata"]["target"]
    assert cd.score(f"x#{solve_countdown(nums, target).expression}", p) == 1.0
    assert cd.score("+".join(map(str, nums)) if sum(nums) != target else "*".join(map(str, nums)), p) == 0.05
    assert cd.score("1+1", p) == 0.05 and cd.score("garbage", p) == 0.01
    # never hand a power tower to sympy: evaluated, it would not finish (a hang guard, not a speed goal)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the scorer evaluated a power tower"))
    signal.alarm(120)
    try:
        assert cd.score("9**9**9**9**9", p) == 0.01
    finally:
        signal.alarm(0)
    gsm = make_task("gsm_symbolic", seed=0, size=5, eval_size=5, difficulty="easy")
    p = gsm.eval[0]
    assert gsm.score(f"blah#{p.answer}", p) == 1.0 and gsm.score("blah#-1", p) < 1.0


def test_reward_mixes_in_format():
    cs = make_task("chain_sum", seed=0, size=5, eval_size=5, difficulty="tiny")
    p = cs.eval[0]
    assert cs.reward("x" + p.completion, p, format_weight=0.5) == pytest.approx(0.5 * cs.score("x" + p.completion, p))
    assert cs.reward(p.completion, p, format_weight=0.2) == 1.0
    with pytest.raises(ValueError, match="format_weight"):
        cs.reward(p.completion, p, format_weight=2.0)


def test_splits_are_disjoint_distinct_and_seeded(tasks):
    task = tasks["chain_sum"]
    eval_prompts = [p.prompt for p in task.eval]
    assert len(set(eval_prompts)) == len(eval_prompts)
    assert not set(eval_prompts) & {p.prompt for p in task.train}
    again = make_task("chain_sum", seed=0, size=300, eval_size=40, difficulty="easy")
    assert [p.prompt for p in again.train] == [p.prompt for p in task.train]
    other = make_task("chain_sum", seed=1, size=300, eval_size=40, difficulty="easy")
    assert [p.prompt for p in other.eval] != eval_prompts


def test_formats(tasks):
    assert tasks["chain_sum"].eval[0].prompt.endswith("=")
    steps, answer = tasks["chain_sum_cot"].train[0].completion, tasks["chain_sum_cot"].train[0].answer
    assert steps.endswith(answer)
    p = tasks["countdown"].train[0]
    assert p.prompt == ",".join(map(str, p.entry["metadata"]["numbers"])) + f":{p.entry['metadata']['target']}="
    assert "#" in p.completion and "Give the result" not in tasks["gsm_symbolic"].eval[0].prompt


def _value(steps):
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: Fraction(a) / b}
    for a, op, b, c in steps:
        assert ops[op](a, b) == c
    return steps[-1][3]


@pytest.mark.parametrize(
    "numbers,target",
    [([3, 5, 7], 22), ([1, 3, 4, 6], 24), ([2, 2, 2], 1), ([10, 5, 2], 7), ([25, 50, 75, 100, 3, 6], 952), ([7], 7)],
)
def test_countdown_solver_is_exact(numbers, target):
    sol = solve_countdown(numbers, target)
    assert sol is not None
    assert Fraction(eval(sol.expression.replace("/", "*Fraction(1)/"))) == target  # the expression reaches it
    assert sorted(int(t) for t in __import__("re").findall(r"\d+", sol.expression)) == sorted(numbers)
    if len(numbers) > 1:
        assert _value(sol.steps) == target and len(sol.steps) == len(numbers) - 1


def test_countdown_solver_reports_impossible():
    assert solve_countdown([4, 6, 9], 1000) is None
    assert solve_countdown([2], 3) is None


def test_countdown_solver_agrees_with_the_scorer(tasks):
    task = tasks["countdown"]
    for p in task.train + task.eval:
        md = p.entry["metadata"]
        assert task.score(solve_countdown(md["numbers"], md["target"]).expression, p) == 1.0


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="name"):
        make_task("sudoku")
    with pytest.raises(ValueError, match="difficulty"):
        make_task("chain_sum", difficulty="insane")
    with pytest.raises(ValueError, match="seed"):
        make_task("chain_sum", seed=-1)
    with pytest.raises(ValueError, match="eval_size"):
        make_task("chain_sum", difficulty="tiny", size=10, eval_size=500)
