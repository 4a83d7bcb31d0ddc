"""Hypothesis profiles: deterministic by default, random exploration on request.

The default profile derandomizes every property test (examples fixed by each
test's source), so a run of the suite, and CI, is reproducible. To search for
new counterexamples run ``HYPOTHESIS_PROFILE=explore python -m pytest``; a
failure found that way is turned into a regression test (as in
``tests/test_lambert.py`` and ``tests/test_objectives.py``).
"""

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
