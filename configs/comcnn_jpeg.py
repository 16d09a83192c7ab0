"""ComCNN + JPEG + RecCNN (Jiang et al. 2017; issue 16; docs/COMCNN.md): the training recipe of
``lic_jax.restoration.comcnn_train`` as used by ``experiments/comcnn_schemes.py``.

``paper()`` is SYSTEMS.md §9's recipe scaled to phases (batch 128, 40×40 patches, lr 1e-3 RecCNN /
1e-4 ComCNN); ``short()`` is the CPU budget run recorded in docs/COMCNN.md (batch 8, a few hundred
steps: 2 shared CPU cores, ≈ 3 s per RecCNN step).
"""

from lic_jax.restoration.comcnn_train import ComCNNTrainConfig


def paper(scheme: str = "st", qf: int = 10) -> ComCNNTrainConfig:
    return ComCNNTrainConfig(scheme=scheme, qf=qf, batch=128, patch=40, init_steps=500, rec_steps=5000,
                             com_steps=2000, cycles=4, lr_rec=1e-3, lr_com=1e-4)


def short(scheme: str = "st", qf: int = 10) -> ComCNNTrainConfig:
    return ComCNNTrainConfig(scheme=scheme, qf=qf, batch=8, patch=40, init_steps=300, rec_steps=150,
                             com_steps=60, cycles=2, lr_init=1e-3, lr_rec=1e-3, lr_com=1e-4, log_every=5,
                             ckpt_every=20)


def short_zero_init(scheme: str = "st", qf: int = 10) -> ComCNNTrainConfig:
    """``short()`` with RecCNN's last convolution zero at init (x̂ = bicubic↑ at step 0)."""
    c = short(scheme, qf)
    c.rec_zero_init = True
    return c


def smoke(scheme: str = "st", qf: int = 10) -> ComCNNTrainConfig:
    """Seconds: N = 8, depth 4, a few steps on 3 images (checks the command end to end)."""
    return ComCNNTrainConfig(scheme=scheme, qf=qf, N=8, depth=4, batch=2, init_steps=2, rec_steps=2, com_steps=3,
                             cycles=1, max_images=3, log_every=1, ckpt_every=2)


CONFIGS = {"short": short, "short_zero_init": short_zero_init, "paper": paper, "smoke": smoke}


def get_config(scheme: str = "st", qf: int = 10, name: str = "short") -> ComCNNTrainConfig:
    return CONFIGS[name](scheme, qf)
