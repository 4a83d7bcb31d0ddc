"""A small RL-for-reasoning trainer: reasoning-gym tasks, a character-level GPT, SFT warm start.

* :mod:`sims.llm.tasks` — :func:`make_task`, :class:`Task`, :func:`solve_countdown`;
* :mod:`sims.llm.tokenizer` — :class:`CharTokenizer`, ``pad_left`` / ``pad_right``;
* :mod:`sims.llm.model` — :class:`GPT`, :class:`GPTConfig`, :class:`Rollout` (sampling with a KV cache);
* :mod:`sims.llm.sft` — :class:`SFTConfig`, :func:`train_sft` (``python -m sims.llm.sft``);
* :mod:`sims.llm.evaluate` — :func:`pass_at_k`, :func:`evaluate`;
* :mod:`sims.llm.rl` — :class:`RLConfig`, :func:`train_rl` (``python -m sims.llm.rl``), the RL loop under lag;
* :mod:`sims.llm.rundir` — :class:`RunDir`, the run folder both trainers share (metrics CSV, TensorBoard,
  atomic checkpoint, resume check);
* :mod:`sims.llm.lag_study`, :mod:`sims.llm.confirm`, :mod:`sims.llm.probe` — the experiments;
* :mod:`sims.llm.checkpoint` — :func:`save_checkpoint`, :func:`load_checkpoint`.

Every logged metric is defined in docs/llm_metrics.md.
"""

__all__ = []  # the package holds modules only; each declares its own __all__
