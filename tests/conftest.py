import os

import numpy as np
import pytest
from hypothesis import settings

# CI runs without a deadline: JIT compilation and a busy 2-core machine make
# per-example timings meaningless.
settings.register_profile("ci", deadline=None, max_examples=60, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=30)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
