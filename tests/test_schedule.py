import math

import pytest

from trainer.schedule import learning_rate


def test_warmup_is_linear_then_cosine_decays_to_zero():
    total, warmup, base = 100, 20, 5e-4
    lrs = [learning_rate(step, total, base, warmup) for step in range(total)]
    assert lrs[:warmup] == pytest.approx([base * (s + 1) / warmup for s in range(warmup)])
    assert lrs[warmup] == pytest.approx(base)
    assert lrs[60] == pytest.approx(0.5 * base * (1 + math.cos(math.pi * 40 / 80)))
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))
    assert learning_rate(total, total, base, warmup) == pytest.approx(0.0, abs=1e-12)


def test_no_warmup_starts_at_base():
    assert learning_rate(0, 10, 1.0, 0) == 1.0
