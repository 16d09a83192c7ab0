"""A test-only toy family: a CNN pair around a standard JPEG payload (the shape of seed 004,
Jiang et al. 2017 "An End-to-End Compression Framework Based on Convolutional Neural
Networks", §3 Fig. 1: ComCNN → JPEG → RecCNN), tiny and untrained.

It exists to show that a new family is one model module plus one registry entry (issue 11):
nothing in ``Codec``, the trainer, the container or the CLI knows about it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lic_jax.models.registry import ModelRecord


class JpegPayloadToy(nn.Module):
    """analysis: 3×3 conv, stride 2, sigmoid → a half-size RGB image in [0, 1] (the JPEG payload);
    synthesis: nearest ×2 upsampling + a 3×3 residual conv. ``detail_synthesis``: a second
    decoder (upsampling only), to exercise the decoder choice."""

    payload_codec: str = "jpeg"
    payload_quality: int = 80
    downsampling = 2

    def setup(self):
        self.com = nn.Conv(3, (3, 3), strides=(2, 2), padding="SAME")
        self.rec = nn.Conv(3, (3, 3), padding="SAME")

    def analysis(self, x):
        return jax.nn.sigmoid(self.com(x))

    def _up(self, y):
        return jnp.repeat(jnp.repeat(y, 2, axis=1), 2, axis=2)

    def synthesis(self, y):
        u = self._up(y)
        return u + 0.1 * self.rec(u)

    def detail_synthesis(self, y):
        return self._up(y)

    def __call__(self, x, train: bool = False):
        y = self.analysis(x)
        return {"x_hat": self.synthesis(y), "y": y, "likelihoods": {}}


RECORD = ModelRecord("toy-jpeg-payload", JpegPayloadToy, 200, "external",
                     decoders=("synthesis", "detail_synthesis"))
