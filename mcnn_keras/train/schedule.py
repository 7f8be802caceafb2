"""The paper's learning-rate recipe as a pure function of the global step.

    peak   = min(base_lr * global_batch / reference_batch_size, max_lr)   # linear rule
    warmup : warmup_start_lr -> peak, linearly over warmup_steps
    decay  : peak -> end_lr, polynomial of `decay_power` over the remaining steps

Field names are those of `config.ScheduleConfig` (and the flags).

With base_lr = 0.001 and reference_batch = the per-worker batch, k workers
reach k x 0.001, as in the original code; the paper capped the rule at 0.032
once the global batch reached 2048.

Usage:

    schedule = LinearScalingSchedule(base_lr=0.001, global_batch=256,
                                     reference_batch_size=32, max_lr=0.032,
                                     warmup_steps=500, total_steps=5000)
    lr = schedule(step)
    # or, for a run: the schedule section, the global batch, steps per epoch
    schedule = LinearScalingSchedule.for_run(cfg.schedule, global_batch=64,
                                             steps_per_epoch=100)
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class LinearScalingSchedule:
    """Warmup to the linearly scaled peak, then polynomial decay."""

    base_lr: float
    global_batch: int
    reference_batch_size: int
    total_steps: int
    warmup_steps: int = 0
    warmup_start_lr: float = 0.001
    max_lr: float = float("inf")
    end_lr: float = 1e-4
    decay_power: float = 1.0

    @classmethod
    def for_run(cls, schedule, global_batch, steps_per_epoch):
        """The schedule of a run from its `config.ScheduleConfig` section."""
        total_steps = schedule.epochs * steps_per_epoch
        return cls(base_lr=schedule.base_lr, global_batch=global_batch,
                   reference_batch_size=schedule.reference_batch_size or schedule.batch_size,
                   total_steps=total_steps,
                   warmup_steps=min(total_steps, round(schedule.warmup_epochs * steps_per_epoch)),
                   warmup_start_lr=schedule.warmup_start_lr, max_lr=schedule.max_lr,
                   end_lr=schedule.end_lr, decay_power=schedule.decay_power)

    def __post_init__(self):
        if self.reference_batch_size <= 0 or self.global_batch <= 0:
            raise ValueError("global and reference batch sizes must be positive")
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} must be in "
                             f"[0, total_steps={self.total_steps}]")

    @property
    def peak_lr(self):
        return min(self.base_lr * self.global_batch / self.reference_batch_size, self.max_lr)

    def __call__(self, step):
        """The learning rate for the update made at global step `step` (0-based)."""
        step = min(max(int(step), 0), self.total_steps)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.warmup_start_lr + (self.peak_lr - self.warmup_start_lr) * fraction
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps == 0:
            return self.peak_lr
        remaining = 1.0 - (step - self.warmup_steps) / decay_steps
        return (self.peak_lr - self.end_lr) * remaining ** self.decay_power + self.end_lr
