"""Restoration RD evaluation (issue 16): JPEG, JPEG+ARCNN, JPEG+ARCNN+ASPP and ComCNN+JPEG+RecCNN
over a list of JPEG quality factors, on grey (Y′) or colour image sets; BD-rate / BD-PSNR against plain JPEG.

    python eval.py restoration [--datasets classic,kodak] [--qfs 5,10,15,20,25,30,40,50]
                               [--systems jpeg,arcnn,arcnn-aspp,comcnn] [--comcnn DIR]
                               [--out-dir benchmarks/results] [--name restoration_rd] [--limit N]

* Images: every image of each set as Y′ (BT.601, ``lic_jax.restoration.data.load_folder``; the
  colour Kodak images and monarch are converted), uint8. A set is a name under the shared data
  root (``classic``, ``kodak``) or ``NAME=FOLDER``; ``NAME:rgb`` (``kodak:rgb``,
  ``mine:rgb=FOLDER``) evaluates the set in colour instead (below).
* Colour sets (``:rgb``): the RGB image; JPEG is Pillow's colour baseline JPEG with 4:2:0 chroma
  subsampling (Pillow's default and what cameras and the web use); the ARCNN systems restore the
  decoded file's Y′ and keep its Cb/Cr, as ``lic restore`` does (``restore.restore_image``);
  ComCNN+JPEG+RecCNN re-targets the artifact to ``colour='per-channel'`` (the same grey nets on
  R, G and B; a 3-channel 4:4:4 JPEG payload). bpp counts the file's bytes per *pixel* (not per
  sample). PSNR is over all three channels (one MSE), SSIM the mean of the three channels' SSIM,
  PSNR-B is computed on the Y′ of the original and of the output.
* JPEG: Pillow baseline at QF q (``jpeg_roundtrip``, one component for grey); bpp = 8 · file
  bytes / pixels (the whole JFIF file).
* JPEG+ARCNN / JPEG+ARCNN+ASPP: the same decoded JPEG (so the same bytes and bpp), restored by
  the shipped model of that family whose training QF is nearest to q (``restore.choose``, ties
  to the lower QF), as ``lic restore`` does; the model used is recorded per QF. A family with
  no shipped weights is recorded as such and left out.
* ComCNN+JPEG+RecCNN: the ``comcnn-jpeg`` artifact ``--comcnn DIR`` re-targeted to payload QF q
  (same weights), through ``Codec`` with real ``.lic`` bytes: bpp = 8 · .lic file bytes / pixels
  (JPEG payload + container). Left out without ``--comcnn``.
* Metrics on Y′ against the original: PSNR, SSIM (``lic_jax.metrics.ssim``, 11×11 Gaussian),
  PSNR-B (``lic_jax.metrics_blocking``). Per QF, the set's value is the mean of per-image values
  (bpp too).
* BD-rate and BD-PSNR (PSNR vs bpp, ``lic_jax.evaluation.bd``, PCHIP, overlap interval) of each
  system against plain JPEG on the same images. The JPEG anchor curve is the --qfs points plus
  QF 1–4 (``--anchor-extra``) so that the low-rate ComCNN curve overlaps it; a BD that is not
  defined (no overlap, < 4 points) is recorded as the reason.
* ``--cache FILE`` (default ``$LIC_JAX_CACHE/restoration_rd/<name>.cache.jsonl``, see lic_jax.zoo): per-image results keyed by the
  image's and the weights' SHA-256, so an interrupted or extended run computes only what is missing.
* Writes ``<out-dir>/<name>.json`` (everything, per image), ``<name>.md`` (tables) and
  ``<name>.png`` (PSNR and PSNR-B against bpp, one row per set); a tqdm progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

__all__ = ["main", "evaluate", "markdown", "plot", "SYSTEMS"]

SYSTEMS = ("jpeg", "arcnn", "arcnn-aspp", "comcnn")
LABELS = {"jpeg": "JPEG", "arcnn": "JPEG+ARCNN", "arcnn-aspp": "JPEG+ARCNN+ASPP", "comcnn": "ComCNN+JPEG+RecCNN"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("LIC_JAX_SHARED", os.path.join(os.path.dirname(REPO), "shared"))


def _metrics(x: np.ndarray, y: np.ndarray) -> dict:
    """PSNR / SSIM / PSNR-B of uint8 ``y`` against ``x``: grey (H, W) or RGB (H, W, 3) (PSNR over all
    samples, SSIM the channel mean, PSNR-B on Y′)."""
    from ..evaluation.image_metrics import psnr
    from ..metrics_blocking import psnr_b
    from .data import to_luma
    from .train import _ssim

    if x.ndim == 2:
        return {"psnr": float(psnr(x, y)), "ssim": float(_ssim(x, y)), "psnrb": float(psnr_b(x, y))}
    return {"psnr": float(psnr(x, y)), "ssim": float(np.mean([_ssim(x[..., c], y[..., c]) for c in range(3)])),
            "psnrb": float(psnr_b(to_luma(x), to_luma(y)))}


def _names(folder: str, limit):
    from .data import IMAGE_EXTS

    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS))
    return names[:limit] if limit else names


def _comcnn_codec(art, q: int, colour: str = "grey"):
    from ..coding import Codec
    from ..models.registry import ModelSpec

    hp = {**art.spec.hparams, "payload_quality": int(q), "colour": colour}
    return Codec(art.model.clone(payload_quality=int(q), colour=colour), ModelSpec(art.spec.name, art.spec.quality, hp),
                 art.variables, fingerprint=art.fingerprint)


class _Cache:
    """Per-image results in a JSON-lines file, keyed by (set, image, system, QF, weights id), so a
    rerun (or a run with more systems) computes only what is missing. The weights id is the
    SHA-256 of the ARCNN msgpack / the comcnn-jpeg fingerprint; the original image's SHA-256 is
    part of the key too."""

    def __init__(self, path: str | None):
        self.path, self.d = path, {}
        if path and os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        k, v = json.loads(line)
                        self.d[k] = v
                    except ValueError:
                        pass  # a line cut by an interruption

    def get(self, key):
        return self.d.get(key)

    def put(self, key, value):
        self.d[key] = value
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps([key, value]) + "\n")


def _sha(path_or_bytes) -> str:
    import hashlib

    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return hashlib.sha256(path_or_bytes).hexdigest()[:16]
    with open(path_or_bytes, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def evaluate(datasets: dict, qfs, systems=SYSTEMS, comcnn: str | None = None, weights_dir: str | None = None,
             limit: int | None = None, anchor_extra=(1, 2, 3, 4), progress: bool = True,
             cache: str | None = None) -> dict:
    """The RD points, per-image rows and BD numbers (see the module docstring)."""
    from tqdm import tqdm

    from ..evaluation.bd import bd_quality, bd_rate
    from .data import load_folder
    from .jpeg import jpeg_roundtrip
    from .restore import available, choose, restore_image
    from .train import load_exported

    qfs = [int(q) for q in qfs]
    for q in qfs:
        if not 1 <= q <= 95:
            raise ValueError(f"QF must be in 1..95, got {q}")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; expected some of {', '.join(SYSTEMS)}")
    anchor_extra = [int(q) for q in anchor_extra if int(q) not in qfs]
    res = {"qfs": qfs, "anchor_extra_qfs": anchor_extra, "systems": {}, "datasets": {}}
    active = ["jpeg"]
    for fam in ("arcnn", "arcnn-aspp"):
        if fam in systems:
            have = available(fam, weights_dir)
            res["systems"][fam] = {"shipped_qfs": sorted(have)} if have else {"skipped": f"no shipped {fam} weights"}
            if have:
                active.append(fam)
    art = None
    if "comcnn" in systems:
        if comcnn:
            from ..artifact import load_artifact

            art = load_artifact(comcnn)
            if art.spec.name != "comcnn-jpeg":
                raise ValueError(f"--comcnn {comcnn}: a {art.spec.name} model directory, expected comcnn-jpeg")
            res["systems"]["comcnn"] = {"artifact": comcnn, "fingerprint": art.fingerprint,
                                        "trained_qf": art.spec.hparams.get("payload_quality"),
                                        "metadata": art.metadata}
            active.append("comcnn")
        else:
            res["systems"]["comcnn"] = {"skipped": "no --comcnn model directory"}
    sets = {}
    for name, folder in datasets.items():
        colour = "rgb" if name.endswith(":rgb") else "y"
        imgs = load_folder(folder, colour, min_side=8, limit=limit)
        sets[name] = (folder, dict(zip(_names(folder, limit), imgs)))
    total = sum(len(im) for _, im in sets.values()) * (len(qfs) + len(anchor_extra))
    bar = tqdm(total=total, desc="restoration RD", unit="img", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    models = {}
    memo = _Cache(cache)
    import PIL

    jpeg_id = f"pillow{PIL.__version__}"
    t0 = time.time()
    try:
        for name, (folder, imgs) in sets.items():
            rgb = name.endswith(":rgb")
            ds = {"folder": folder, "colour": "rgb" if rgb else "y", "images": sorted(imgs),
                  "curves": {s: {} for s in active}, "per_image": {}}
            if rgb:
                ds["jpeg_subsampling"] = "4:2:0"
                ds["comcnn_colour"] = "per-channel"
            sub = "4:2:0" if rgb else "4:4:4"  # grey: one component, subsampling does not apply
            for q in list(anchor_extra) + qfs:
                main_q = q in qfs
                rows = {s: [] for s in (active if main_q else ["jpeg"])}
                used = {}
                cc = None
                for iname, x in imgs.items():
                    base = f"{name}|{iname}|{_sha(x.tobytes())}|{q}"
                    pixels = x.shape[0] * x.shape[1]
                    j = None

                    def jpeg_decoded():
                        nonlocal j
                        if j is None:
                            j, nb = jpeg_roundtrip(x, q, sub)
                            j = (j, 8.0 * nb / pixels)
                        return j

                    key = f"{base}|jpeg|{jpeg_id}"
                    row = memo.get(key)
                    if row is None:
                        dec, bpp = jpeg_decoded()
                        row = {"image": iname, "bpp": bpp, **_metrics(x, dec)}
                        memo.put(key, row)
                    rows["jpeg"].append(row)
                    if main_q:
                        for fam in ("arcnn", "arcnn-aspp"):
                            if fam not in rows:
                                continue
                            mq, stem = choose(fam, q, weights_dir)
                            if stem not in models:
                                models[stem] = (None, None, _sha(stem + ".msgpack"))
                            used[fam] = os.path.basename(stem)
                            key = f"{base}|{used[fam]}|{models[stem][2]}"
                            row = memo.get(key)
                            if row is None:
                                if models[stem][0] is None:
                                    models[stem] = (*load_exported(stem)[:2], models[stem][2])
                                r, params, _ = models[stem]
                                dec, bpp = jpeg_decoded()
                                # what `lic restore` does: grey as is, colour Y′ restored with the file's Cb/Cr kept
                                out = restore_image(dec, r, params)
                                row = {"image": iname, "bpp": bpp, "model": used[fam], **_metrics(x, out)}
                                memo.put(key, row)
                            rows[fam].append(row)
                        if "comcnn" in rows:
                            key = f"{base}|comcnn|{art.fingerprint[:16]}"
                            row = memo.get(key)
                            if row is None:
                                cc = cc or _comcnn_codec(art, q, "per-channel" if rgb else "grey")
                                enc = cc.encode(x)
                                out = np.asarray(cc.decompress(enc.data))
                                out = out[..., 0] if out.ndim == 3 and not rgb else out
                                row = {"image": iname, "bpp": 8.0 * len(enc.data) / pixels,
                                       "payload_bpp": 8.0 * enc.payload_bytes / pixels, **_metrics(x, out)}
                                memo.put(key, row)
                            rows["comcnn"].append(row)
                    bar.update(1)
                for s, rr in rows.items():
                    mean = {k: float(np.mean([row[k] for row in rr])) for k in ("bpp", "psnr", "ssim", "psnrb")}
                    if s in used:
                        mean["model"] = used[s]
                    key = "jpeg_anchor_extra" if not main_q else s
                    ds["curves"].setdefault(key, {})[str(q)] = mean
                    if main_q:
                        ds["per_image"].setdefault(s, {})[str(q)] = rr
            # BD against plain JPEG (the anchor: --qfs points plus the extra low QFs)
            anc = {**ds["curves"].get("jpeg_anchor_extra", {}), **ds["curves"]["jpeg"]}
            ab = [v["bpp"] for v in anc.values()]
            ap = [v["psnr"] for v in anc.values()]
            ds["bd_vs_jpeg"] = {}
            for s in active:
                if s == "jpeg":
                    continue
                c = ds["curves"][s]
                tb, tp = [c[str(q)]["bpp"] for q in qfs], [c[str(q)]["psnr"] for q in qfs]
                bd = {}
                for k, f in (("bd_rate_pct", bd_rate), ("bd_psnr_db", bd_quality)):
                    try:
                        bd[k] = float(f(ab, ap, tb, tp))
                    except Exception as e:  # noqa: BLE001 - no overlap / too few points: say which
                        bd[k] = f"{type(e).__name__}: {e}"
                ds["bd_vs_jpeg"][s] = bd
            res["datasets"][name] = ds
    finally:
        bar.close()
    res["seconds"] = time.time() - t0
    return res


def _f(v, fmt):
    return fmt.format(v) if isinstance(v, (int, float)) else f"n/a ({v})"


def markdown(res: dict) -> str:
    lines = []
    for name, ds in res["datasets"].items():
        act = [s for s in SYSTEMS if s in ds["curves"]]
        what = ("RGB, JPEG 4:2:0, ARCNN on Y′; PSNR over RGB, SSIM the channel mean, PSNR-B on Y′"
                if ds.get("colour") == "rgb" else "Y′")
        lines.append(f"**{name}** ({len(ds['images'])} images, {what}; mean of per-image values; "
                     f"PSNR / SSIM / PSNR-B against the original)\n")
        head = "| QF | " + " | ".join(f"{LABELS[s]} bpp, PSNR, SSIM, PSNR-B" for s in act) + " |"
        lines += [head, "|---|" + "---|" * len(act)]
        for q in res["qfs"]:
            cells = []
            for s in act:
                m = ds["curves"][s][str(q)]
                c = f"{m['bpp']:.3f}, {m['psnr']:.2f}, {m['ssim']:.4f}, {m['psnrb']:.2f}"
                if s != "jpeg" and s != "comcnn":
                    g = m["psnr"] - ds["curves"]["jpeg"][str(q)]["psnr"]
                    c += f" ({g:+.2f} dB, {m.get('model', '')})"
                cells.append(c)
            lines.append(f"| {q} | " + " | ".join(cells) + " |")
        lines.append("")
        if ds["bd_vs_jpeg"]:
            lines += ["| system vs JPEG | BD-rate | BD-PSNR |", "|---|---|---|"]
            for s, bd in ds["bd_vs_jpeg"].items():
                lines.append(f"| {LABELS[s]} | {_f(bd['bd_rate_pct'], '{:+.1f} %')} | "
                             f"{_f(bd['bd_psnr_db'], '{:+.2f} dB')} |")
            lines.append("")
    skipped = {s: v["skipped"] for s, v in res["systems"].items() if "skipped" in v}
    for s, why in skipped.items():
        lines.append(f"{LABELS[s]}: not evaluated ({why}).")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(res["datasets"])
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 4.6 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        ds = res["datasets"][name]
        cl = "RGB" if ds.get("colour") == "rgb" else "Y′"
        for ax, key, lab in zip(row, ("psnr", "psnrb"), (f"PSNR {cl} [dB]", "PSNR-B Y′ [dB]")):
            for s in [s for s in SYSTEMS if s in ds["curves"]]:
                c = ds["curves"][s]
                qs = res["qfs"] if s != "jpeg" else sorted(
                    {*map(int, c), *map(int, ds["curves"].get("jpeg_anchor_extra", {}))})
                pts = [(ds["curves"]["jpeg_anchor_extra"] if str(q) not in c else c)[str(q)] for q in qs]
                ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], "--" if s == "jpeg" else "-o", ms=4,
                        label=LABELS[s])
            ax.set_xlabel("bpp (real bytes)")
            ax.set_ylabel(lab)
            ax.set_title(f"{name} ({cl}), QF {res['qfs'][0]}–{res['qfs'][-1]}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _datasets(spec: str) -> dict:
    out = {}
    for item in [s for s in spec.split(",") if s]:
        name, _, folder = item.partition("=")
        base, _, colour = name.partition(":")
        if colour not in ("", "rgb"):
            raise ValueError(f"data set {name!r}: the only colour suffix is ':rgb'")
        folder = folder or os.path.join(SHARED, "data", base)
        if not os.path.isdir(folder):
            raise ValueError(f"data set {name!r}: no folder {folder}")
        out[name] = folder
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="eval.py restoration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="classic,kodak", help="names under the shared data root or NAME=FOLDER")
    p.add_argument("--qfs", default="5,10,15,20,25,30,40,50")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--comcnn", metavar="DIR", help="comcnn-jpeg model directory (lic_jax artifact)")
    p.add_argument("--weights-dir", help="ARCNN weights folder (default: the shipped lic_jax/assets/arcnn)")
    p.add_argument("--limit", type=int, help="first N images of each set")
    p.add_argument("--out-dir", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--name", default="restoration_rd")
    p.add_argument("--cache", metavar="FILE", help="per-image results (JSON lines): a rerun computes only what "
                   "is missing (default: <lic_jax cache>/restoration_rd/<name>.cache.jsonl, the cache of lic_jax.zoo; "
                   "'none': no cache)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        qfs = [int(v) for v in a.qfs.split(",") if v]
        cache = None if a.cache == "none" else (a.cache or os.path.join(
            __import__("lic_jax.zoo", fromlist=["cache_dir"]).cache_dir(), "restoration_rd", a.name + ".cache.jsonl"))
        if cache:
            os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        res = evaluate(_datasets(a.datasets), qfs, [s for s in a.systems.split(",") if s], a.comcnn, a.weights_dir,
                       a.limit, progress=not a.no_progress, cache=cache)
    except (ValueError, OSError) as e:
        print(f"eval.py restoration: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    res["command"] = "python eval.py restoration " + " ".join(sys.argv[2:] if argv is None else argv)
    os.makedirs(a.out_dir, exist_ok=True)
    stem = os.path.join(a.out_dir, a.name)
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(stem + ".md", "w") as f:
        f.write(md)
    plot(res, stem + ".png")
    print(md)
    print(f"wrote {stem}.json, {stem}.md, {stem}.png ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
