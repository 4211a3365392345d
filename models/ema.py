"""Exponential moving average (EMA) of a module's weights.

The shadow weights are kept as plain tensors outside the module so that DDP
does not broadcast them as buffers at every step; they are saved in the
checkpoint through ``state_dict`` and swapped into the module for validation,
testing and inference.
"""

import torch


class EMA:
    """EMA of the floating point parameters and buffers of ``module``.

    ``update`` after each optimizer step, ``swap_in``/``swap_out`` around
    evaluation (``swap_out`` restores the training weights bit for bit). With
    ``warmup`` the decay of update n is ``min(decay, (1 + n) / (10 + n))``, as in
    the reference code's torch_ema: early averages do not stay stuck at the random
    initial weights.
    """

    def __init__(self, module, decay=0.999, warmup=True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in self._tracked(module)}
        self._backup = None

    @staticmethod
    def _tracked(module):
        # Integer buffers (counters) are not averaged: copy-through would be wrong.
        for name, tensor in module.state_dict(keep_vars=True).items():
            if torch.is_floating_point(tensor):
                yield name, tensor

    @property
    def swapped_in(self):
        return self._backup is not None

    def training_weights(self):
        """The weights kept aside by ``swap_in`` (None when not swapped in)."""
        return self._backup

    @torch.no_grad()
    def update(self, module):
        """shadow <- decay * shadow + (1 - decay) * weights."""
        if self.swapped_in:
            raise RuntimeError("EMA.update called while the EMA weights are swapped in")
        self.num_updates += 1
        decay = self.current_decay()
        shadows, weights = [], []
        for name, tensor in self._tracked(module):
            shadow = self.shadow[name]
            if shadow.device != tensor.device:
                shadow = self.shadow[name] = shadow.to(tensor.device)
            shadows.append(shadow)
            weights.append(tensor.detach())
        if shadows:  # one fused update instead of a kernel launch per tensor
            torch._foreach_lerp_(shadows, weights, 1.0 - decay)

    def current_decay(self):
        """Decay used by the latest update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def swap_in(self, module):
        """Copy the EMA weights into ``module``, keeping the current ones aside."""
        if self.swapped_in:
            return
        self._backup = {}
        for name, tensor in self._tracked(module):
            self._backup[name] = tensor.detach().clone()
            tensor.data.copy_(self.shadow[name].to(tensor.device))

    @torch.no_grad()
    def swap_out(self, module):
        """Restore the weights saved by ``swap_in``."""
        if not self.swapped_in:
            return
        for name, tensor in self._tracked(module):
            tensor.data.copy_(self._backup[name])
        self._backup = None

    @torch.no_grad()
    def copy_to(self, module):
        """Overwrite ``module`` with the EMA weights for good (inference models)."""
        for name, tensor in self._tracked(module):
            tensor.data.copy_(self.shadow[name].to(tensor.device))

    def state_dict(self):
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.detach().cpu().clone() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state):
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks weights for {sorted(missing)[:5]}")
        self.decay = state["decay"]
        self.warmup = state.get("warmup", self.warmup)
        self.num_updates = state["num_updates"]
        for name, value in state["shadow"].items():
            if name in self.shadow:
                self.shadow[name] = value.to(self.shadow[name].device, self.shadow[name].dtype)
