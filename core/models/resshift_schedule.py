"""ResShift's residual-shifting schedule (the ×4 real-SR model's: T = 15, κ = 2, p = 0.3).

x_t = x0 + η_t (y − x0) + κ √η_t ε, with √η growing from √η_1 to √η_T = 0.99 geometrically in
t^p, as the release's `get_named_eta_schedule("exponential")` computes it. Its `min_noise_level`
0.04 is the noise std κ√η_1 of the first step: √η_1 = min(0.04 / κ, 0.04) = 0.02. Timesteps are
0-based indices (t = T−1 is the first sampling step), as in the release. The tables are float64;
like the release, values are taken as float32 tensors before they touch data.
"""

from __future__ import annotations

import math

import torch


class ResShiftSchedule:
    def __init__(self, steps: int = 15, kappa: float = 2.0, power: float = 0.3, min_noise_level: float = 0.04,
                 etas_end: float = 0.99):
        self.steps, self.kappa = steps, kappa
        start = min(min_noise_level / kappa, min_noise_level)
        exponent = torch.linspace(0, 1, steps, dtype=torch.float64) ** power * (steps - 1)
        self.sqrt_etas = start * math.exp(math.log(etas_end / start) / (steps - 1)) ** exponent
        self.etas = self.sqrt_etas**2
        self.etas_prev = torch.cat([torch.zeros(1, dtype=torch.float64), self.etas[:-1]])
        alpha = self.etas - self.etas_prev
        # q(x_{t-1} | x_t, x0): mean = coef1·x_t + coef2·x0; the variance is 0 at t = 0, so its log
        # takes step 1's value there (the release's "clipped" log variance; no noise is added at t = 0)
        self.posterior_mean_coef1 = self.etas_prev / self.etas
        self.posterior_mean_coef2 = alpha / self.etas
        self.posterior_variance = kappa**2 * self.etas_prev / self.etas * alpha
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] as a float32 (N, 1, 1, 1) tensor on `like`'s device."""
        return table[t.cpu()].float().to(like.device).view(-1, *([1] * (like.dim() - 1)))

    def eta(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """η_t of each step index in `t`, shaped (N, 1, …) to broadcast against `like`, on its device."""
        return self._at(self.etas, t, like)

    def noise_std(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """κ√η_t, the std of x_t's noise, shaped and placed as `eta`."""
        return self._at(self.kappa * self.sqrt_etas, t, like)

    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = x0 + η_t (y − x0) + κ √η_t ε."""
        return x0 + self.eta(t, x0) * (y - x0) + self.noise_std(t, x0) * noise

    def prior_sample(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_T = y + κ √η_T ε, where sampling starts."""
        last = torch.full((y.shape[0],), self.steps - 1, dtype=torch.long)
        return y + self.noise_std(last, y) * noise

    def input_scale(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """1/√(η_t κ² + 1): the release normalises the network input (`normalize_input`, latent std ≈ 1)."""
        return 1 / torch.sqrt(self.eta(t, like) * self.kappa**2 + 1)

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor,
                  t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, variance, clipped log variance) of q(x_{t−1} | x_t, x0)."""
        mean = self._at(self.posterior_mean_coef1, t, x_t) * x_t + self._at(self.posterior_mean_coef2, t, x_t) * x0
        return mean, self._at(self.posterior_variance, t, x_t), self._at(self.posterior_log_variance_clipped, t, x_t)

    def step(self, x0: torch.Tensor, x_t: torch.Tensor, t: int, noise: torch.Tensor | None) -> torch.Tensor:
        """One ancestral step of the released sampler: x_{t−1} ~ q(x_{t−1} | x_t, x̂0); noise unused at t = 0."""
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
        mean, _, log_var = self.posterior(x0, x_t, tt)
        return mean if t == 0 else mean + torch.exp(0.5 * log_var) * noise
