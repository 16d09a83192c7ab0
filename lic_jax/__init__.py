"""lic_jax — learned image compression in JAX/Flax.

Layers (GDN, CompressAI-padded convolutions), entropy models (factorized density, conditional
Gaussian), the Ballé / Minnen / Lee model family, RD losses and metrics, CompressAI weight import.
"""

__version__ = "0.1.0"

from . import entropy_models, layers, losses, metrics, models  # noqa: E402
from .models import get_model, model_names  # noqa: E402

__all__ = ["entropy_models", "layers", "losses", "metrics", "models", "get_model", "model_names", "__version__"]
