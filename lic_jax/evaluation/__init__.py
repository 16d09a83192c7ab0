"""Evaluation: RD curves from real bitstreams or estimates, classical baselines, BD-rate, AUC, plots.

Entry point: ``python eval.py …`` (``lic_jax.evaluation.cli``); guide: docs/EVALUATION.md.
"""

from .anchors import anchor_names, anchors_dir, load_anchor
from .bd import (
    BDError,
    NonMonotoneCurveError,
    NoOverlapError,
    auc,
    bd_psnr,
    bd_quality,
    bd_rate,
    ms_ssim_to_db,
)
from .codecs import DEFAULT_SWEEPS, CodecOutput, LearnedCodec, PillowCodec
from .datasets import Dataset, DatasetNotFound, collect_images, resolve_dataset
from .hvs import psnr_hvs_hvsm, psnr_hvs_m
from .image_metrics import compute_metrics, ms_ssim_255
from .results import RDCurve, load_curve, save_json, write_csv
from .runner import Point, evaluate

__all__ = [
    "anchor_names", "anchors_dir", "load_anchor",
    "BDError", "NonMonotoneCurveError", "NoOverlapError", "auc", "bd_psnr", "bd_quality", "bd_rate",
    "ms_ssim_to_db",
    "DEFAULT_SWEEPS", "CodecOutput", "LearnedCodec", "PillowCodec",
    "Dataset", "DatasetNotFound", "collect_images", "resolve_dataset",
    "psnr_hvs_hvsm", "psnr_hvs_m",
    "compute_metrics", "ms_ssim_255",
    "RDCurve", "load_curve", "save_json", "write_csv",
    "Point", "evaluate",
]
