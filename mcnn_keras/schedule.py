"""The paper's learning-rate recipe as a pure function of the global step.

    peak   = min(base_lr * global_batch / reference_batch, max_lr)   # linear rule
    warmup : warmup_start_lr -> peak, linearly over warmup_steps
    decay  : peak -> end_lr, polynomial of `power` over the remaining steps

With base_lr = 0.001 and reference_batch = the per-worker batch, k workers
reach k x 0.001, as in the original code; the paper capped the rule at 0.032
once the global batch reached 2048.

Usage:

    schedule = LinearScalingSchedule(base_lr=0.001, global_batch=256,
                                     reference_batch=32, max_lr=0.032,
                                     warmup_steps=500, total_steps=5000)
    lr = schedule(step)
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class LinearScalingSchedule:
    """Warmup to the linearly scaled peak, then polynomial decay."""

    base_lr: float
    global_batch: int
    reference_batch: int
    total_steps: int
    warmup_steps: int = 0
    warmup_start_lr: float = 0.001
    max_lr: float = float("inf")
    end_lr: float = 1e-4
    power: float = 1.0

    def __post_init__(self):
        if self.reference_batch <= 0 or self.global_batch <= 0:
            raise ValueError("global and reference batch sizes must be positive")
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} must be in "
                             f"[0, total_steps={self.total_steps}]")

    @property
    def peak_lr(self):
        return min(self.base_lr * self.global_batch / self.reference_batch, self.max_lr)

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
        return (self.peak_lr - self.end_lr) * remaining ** self.power + self.end_lr
