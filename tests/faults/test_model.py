"""The executable model: random sequences of every request against the running server, beside the
rules of docs/spec.md written as plain Python (tests/faults/model/rules.py); every answer, refusal
and read-back agrees (tests/faults/model/machine.py says what is compared).

The run's seed is printed (and taken from LOYALTY_MODEL_SEED when set) so a failure replays with
the same steps. LOYALTY_MODEL_STEPS sets how many steps to run, at most: sequences of 40 (a sequence
may end sooner), as many as fit (``./dev model --steps N``).
"""

from __future__ import annotations

import os
import random
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import get_state_machine_test

# A disagreement shows both sides: the machine's asserts are rewritten as a test module's are.
pytest.register_assert_rewrite("tests.faults.model")
from tests.faults.model.machine import Api, ModelMachine  # noqa: E402

# The suite's run: a few thousand steps in programmes of 40 steps each.
STEPS_DEFAULT = 3_000
STEPS_PER_PROGRAMME = 40
STEPS = int(os.environ.get("LOYALTY_MODEL_STEPS") or STEPS_DEFAULT)


# A step takes 20-30 ms here; a long run (./dev model) gets 100 ms a step before the suite's
# per-test timeout would stop it.
@pytest.mark.timeout(max(120, STEPS // 10))
def test_the_server_agrees_with_the_model(channel, channel_with, clock, database_url):
    run_seed = int(os.environ.get("LOYALTY_MODEL_SEED") or random.randrange(2**32))
    print(f"model-based test seed: {run_seed} (replay with LOYALTY_MODEL_SEED={run_seed}"
          f" LOYALTY_MODEL_STEPS={STEPS})")
    ModelMachine.api, ModelMachine.clock, ModelMachine.steps_run = Api(channel), clock, 0
    ModelMachine.till, ModelMachine.database_url = Api(channel_with("pos")), database_url
    ModelMachine.outcomes.clear()
    test = get_state_machine_test(ModelMachine, settings=settings(
        max_examples=max(1, STEPS // STEPS_PER_PROGRAMME), stateful_step_count=STEPS_PER_PROGRAMME,
        deadline=None, print_blob=True, database=None,
        # No shrinking phase: a failing sequence is reported as found, with its seed, in bounded time.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
    started = time.monotonic()
    hypothesis_seed(run_seed)(test)()
    print(f"model-based test: {ModelMachine.steps_run} steps in {time.monotonic() - started:.0f} s; requests:",
          ", ".join(f"{what} {n}" for what, n in sorted(ModelMachine.outcomes.items())))
