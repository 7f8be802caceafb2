"""The learning-rate recipe, against values computed by hand."""

import dataclasses

import pytest

from mcnn_keras.train.config import ScheduleConfig
from mcnn_keras.train.schedule import LinearScalingSchedule


def make(**overrides):
    args = dict(base_lr=0.001, global_batch=64, reference_batch_size=8, total_steps=1000,
                warmup_steps=100, warmup_start_lr=0.001, max_lr=0.032, end_lr=1e-4, decay_power=1.0)
    args.update(overrides)
    return LinearScalingSchedule(**args)


def test_linear_scaling_rule_and_cap():
    assert make().peak_lr == pytest.approx(0.008)  # 8 workers x 0.001
    assert make(global_batch=4096, reference_batch_size=32).peak_lr == pytest.approx(0.032)


def test_warmup_start_end_mid_decay_and_end():
    s = make()
    assert s(0) == pytest.approx(0.001)
    assert s(50) == pytest.approx(0.001 + (0.008 - 0.001) * 0.5)
    assert s(100) == pytest.approx(0.008)
    # Mid-decay: 450 of 900 decay steps left -> halfway between peak and end.
    assert s(550) == pytest.approx((0.008 - 1e-4) * 0.5 + 1e-4)
    assert s(1000) == pytest.approx(1e-4)
    assert s(5000) == pytest.approx(1e-4)


def test_polynomial_power():
    s = make(decay_power=2.0)
    assert s(550) == pytest.approx((0.008 - 1e-4) * 0.25 + 1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        make(warmup_steps=2000)
    with pytest.raises(ValueError, match="total_steps"):
        make(total_steps=0)


def test_for_run_takes_the_schedule_section_whole():
    section = ScheduleConfig(batch_size=8, epochs=3, warmup_epochs=0.5, base_lr=0.001,
                             decay_power=2.0)
    s = LinearScalingSchedule.for_run(section, global_batch=32, steps_per_epoch=10)
    assert (s.total_steps, s.warmup_steps, s.reference_batch_size) == (30, 5, 8)
    assert s.peak_lr == pytest.approx(0.004) and s.decay_power == 2.0
    wider = dataclasses.replace(section, reference_batch_size=16)
    assert LinearScalingSchedule.for_run(wider, 32, 10).peak_lr == pytest.approx(0.002)
