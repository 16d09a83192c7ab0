"""Regenerate hvs_reference.npz / hvs_reference.json: PSNR-HVS-M and PSNR-HVS computed by the
authors' MATLAB code (Ponomarenko's psnrhvsm.m) run in GNU Octave. lic_jax is NOT imported here:
the inputs are made with numpy + Pillow, the values come from Octave.

    python tests/data/hvs_reference/make_reference.py /path/to/psnrhvsm.m /path/to/kodak

psnrhvsm.m is not redistributed (its licence allows research use only); see hvs_reference.json
"provenance" for where it was obtained. Needs octave-cli with the signal package (dct2):
``apt-get install octave octave-signal``.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

HERE = Path(__file__).resolve().parent


def _jpeg(a: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def box_blur(img: np.ndarray) -> np.ndarray:
    """3x3 box blur, edge-replicated, rounded to uint8 (a deterministic distortion, no codec)."""
    a = np.pad(img.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    s = sum(a[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0
    return np.round(s).astype(np.uint8)


# Cases whose inputs are rebuilt from the Kodak files (too large to commit): name → (file, distortion).
KODAK_CASES = {"kodim01_full_rgb_boxblur": "kodim01.png"}


def kodak_case(kodak: Path, name: str):
    a = np.asarray(Image.open(kodak / KODAK_CASES[name]).convert("RGB"))
    return a, box_blur(a), 8


def make_cases(kodak: Path) -> dict:
    """name → (img1 uint8, img2 uint8, wstep). RGB pairs are compared on Y' = .299R + .587G + .114B."""
    rng = np.random.default_rng(20261130)
    cases = {}
    g = np.asarray(Image.open(kodak / "kodim23.png").convert("L"))[100:196, 200:328]
    cases["kodim23_grey_jpeg_q30"] = (g, _jpeg(g, 30), 8)
    c = np.asarray(Image.open(kodak / "kodim01.png").convert("RGB"))[200:248, 300:364]
    cases["kodim01_rgb_jpeg_q20"] = (c, _jpeg(c, 20), 8)
    a = rng.integers(0, 256, (29, 37)).astype(np.uint8)  # sizes not multiples of 8: edge blocks dropped
    b = np.clip(a + rng.normal(0, 6, a.shape) + 10 * np.sin(np.arange(37) / 2.0), 0, 255).round().astype(np.uint8)
    cases["noise_29x37"] = (a, b, 8)
    a = rng.integers(0, 256, (24, 27)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 4, a.shape), 0, 255).round().astype(np.uint8)
    cases["noise_24x27_step5"] = (a, b, 5)  # overlapping windows (wstep = 5)
    # flat 8x8 blocks (masking variance ratio 0 branch) next to textured ones
    a = np.kron(rng.integers(20, 230, (4, 4)), np.ones((8, 8))).astype(np.uint8)
    a[16:, :16] = rng.integers(0, 256, (16, 16))
    b = a.copy()
    b[:8, :] = np.clip(b[:8, :].astype(int) + rng.integers(-3, 4, (8, 32)), 0, 255)
    b[16:, :] = np.clip(b[16:, :].astype(int) + rng.integers(-12, 13, (16, 32)), 0, 255)
    cases["flat_blocks_32x32"] = (a, b.astype(np.uint8), 8)
    # textured image, one pixel changed by 1: all AC error is masked, the DC error is not
    a = rng.integers(0, 256, (16, 24)).astype(np.uint8)
    b = a.copy()
    b[5, 9] = a[5, 9] + 1 if a[5, 9] < 255 else 254
    cases["texture_one_pixel"] = (a, b, 8)
    a = rng.integers(0, 256, (16, 16)).astype(np.uint8)
    cases["identical_16x16"] = (a, a.copy(), 8)
    return cases


def all_cases(kodak: Path) -> dict:
    cases = make_cases(kodak)
    for name in KODAK_CASES:
        cases[name] = kodak_case(kodak, name)
    return cases


DRIVER = r"""
pkg load signal
d = load('cases.mat');
names = fieldnames(d.cases);
fid = fopen('values.txt', 'w');
for i = 1:numel(names)
  c = d.cases.(names{i});
  a = double(c.img1); b = double(c.img2);
  if ndims(a) == 3
    a = 0.299 * a(:,:,1) + 0.587 * a(:,:,2) + 0.114 * a(:,:,3);
    b = 0.299 * b(:,:,1) + 0.587 * b(:,:,2) + 0.114 * b(:,:,3);
  end
  [m, h] = psnrhvsm(a, b, double(c.wstep));
  fprintf(fid, '%s %.17g %.17g\n', names{i}, m, h);
end
fclose(fid);
fprintf('%s\n', version());
"""


def main(m_file: str, kodak: str):
    cases = all_cases(Path(kodak))
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        shutil.copy(m_file, t / "psnrhvsm.m")
        (t / "driver.m").write_text(DRIVER)
        savemat(t / "cases.mat", {"cases": {k: {"img1": a, "img2": b, "wstep": float(s)}
                                            for k, (a, b, s) in cases.items()}})
        r = subprocess.run(["octave-cli", "-q", "driver.m"], cwd=t, capture_output=True, text=True, check=True)
        octave_version = r.stdout.strip().splitlines()[-1]
        values = {}
        for line in (t / "values.txt").read_text().splitlines():
            name, m, h = line.split()
            values[name] = {"psnr_hvs_m": float(m), "psnr_hvs": float(h), "wstep": cases[name][2],
                            "rgb": cases[name][0].ndim == 3,
                            "inputs": f"kodak/{KODAK_CASES[name]} + box_blur" if name in KODAK_CASES else "npz"}
    arrays = {}
    for k, (a, b, _) in cases.items():
        if k in KODAK_CASES:
            continue
        arrays[f"{k}/img1"], arrays[f"{k}/img2"] = a, b
    np.savez_compressed(HERE / "hvs_reference.npz", **arrays)
    meta = json.loads((HERE / "hvs_reference.json").read_text()) if (HERE / "hvs_reference.json").exists() else {}
    meta["octave_version"] = octave_version
    meta["values"] = values
    (HERE / "hvs_reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    for k, v in values.items():
        print(k, v)


if __name__ == "__main__":
    main(*sys.argv[1:3])
