"""Base configuration (see lic_jax/train/config.py for every field and its meaning)."""

from lic_jax.train.config import get_default_config


def get_config():
    return get_default_config()
