#!/usr/bin/env python
"""ComCNN + JPEG + RecCNN: the paper's straight-through scheme vs the official approximate gradient
(SYSTEMS.md §9; issue 16; docs/COMCNN.md records a run).

    nice -n 10 python experiments/comcnn_schemes.py --out ~/lic_runs/comcnn          # train + evaluate (resumable)
    nice -n 10 python experiments/comcnn_schemes.py --out ~/lic_runs/comcnn --stage eval
    nice -n 10 python experiments/comcnn_schemes.py --out ~/lic_runs/comcnn --stage artifact --rd-states common
        # → OUT/common-artifact: a comcnn-jpeg model directory (lic compress --checkpoint, eval.py restoration --comcnn)

1. ``common``: the phases both schemes share (ComCNN init onto the bicubic downscale, the first
   RecCNN phase), trained once in OUT/common.
2. ``st`` and ``approx``: each copies common's checkpoint and continues the same schedule with its
   own ComCNN update (OUT/st, OUT/approx). Every stage resumes from its checkpoint.
3. ``eval``: the grey classic images (/work/shared/data/classic, RGB ones converted to Pillow 'L')
   through ``Codec`` (comcnn-jpeg, real .lic bytes) for each trained state vs plain JPEG at the
   same QF → OUT/results.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from configs.comcnn_jpeg import get_config  # noqa: E402
from lic_jax.restoration import comcnn_train as ct  # noqa: E402


def _prefix_steps(cfg):
    """Steps of the shared prefix: init + the first RecCNN phase."""
    s = ct.schedule(cfg)
    return sum(n for _, n in s[:2])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage", default="all", choices=["all", "train", "eval", "report", "rd", "diag", "artifact"])
    ap.add_argument("--qf", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock cap per stage (checkpointed; rerun resumes)")
    ap.add_argument("--images", default="/work/shared/data/classic")
    ap.add_argument("--rd-qfs", default="5,10,20,30,40,50", help="--stage rd: QFs of the payload")
    ap.add_argument("--rd-names", default="", help="--stage rd: image names (default: all of --images)")
    ap.add_argument("--rd-states", default="st,approx", help="--stage rd: trained states to sweep")
    ap.add_argument("--config", default="short", help="configs/comcnn_jpeg.py: short | short_zero_init | paper")
    a = ap.parse_args(argv)
    out = os.path.expanduser(a.out)
    os.makedirs(out, exist_ok=True)
    if a.stage == "report":
        print(report(out, a.images, a.config, a.qf))
        return
    if a.stage in ("all", "train"):
        base = get_config("st", a.qf, a.config)
        n0 = _prefix_steps(base)
        common = os.path.join(out, "common")
        ct.train(get_config("st", a.qf, a.config), common, a.minutes, stop_at=n0)
        for scheme in ("st", "approx"):
            d = os.path.join(out, scheme)
            os.makedirs(d, exist_ok=True)
            if not os.path.exists(os.path.join(d, "ckpt.msgpack")):
                shutil.copy(os.path.join(common, "ckpt.msgpack"), os.path.join(d, "ckpt.msgpack"))
            ct.train(get_config(scheme, a.qf, a.config), d, a.minutes)
    if a.stage == "rd":
        rd(out, a)
        return
    if a.stage == "diag":
        diagnose(out, a)
        return
    if a.stage == "artifact":  # the trained states as lic_jax model directories (frozen BN, payload at --qf)
        from lic_jax.artifact import save_artifact
        from lic_jax.models.registry import ModelSpec

        for name in [n for n in a.rd_states.split(",") if n]:
            cfg = get_config("st" if name == "common" else name, a.qf, a.config)
            tr = ct.Trainer(cfg)
            st = tr.restore(os.path.join(out, name, "ckpt.msgpack"), __import__("jax").random.PRNGKey(0))
            hp = {"N": cfg.N, "depth": cfg.depth, "payload_quality": a.qf}
            d = os.path.join(out, f"{name}-artifact")
            fp = save_artifact(d, ModelSpec("comcnn-jpeg", None, hp), ct.export(st, tr),
                               metadata={"source": f"{os.path.join(out, name)} step {int(st['step'])} "
                                                   f"(experiments/comcnn_schemes.py, config {a.config})"})
            print(d, fp, flush=True)
        return
    if a.stage in ("all", "eval"):
        imgs = _images(a.images)
        results = {}
        for name in ("common", "st", "approx"):
            d = os.path.join(out, name)
            if not os.path.exists(os.path.join(d, "ckpt.msgpack")):
                continue
            cfg = get_config("st" if name == "common" else name, a.qf, a.config)
            tr = ct.Trainer(cfg)
            st = tr.restore(os.path.join(d, "ckpt.msgpack"), __import__("jax").random.PRNGKey(0))
            results[name] = {"step": int(st["step"]),
                             "rows": ct.evaluate_grey(ct.export(st, tr), imgs, a.qf, cfg.N, cfg.depth)}
            m = results[name]["rows"]["mean"]
            print(f"{name:7s} step {int(st['step']):5d}  ComCNN+JPEG+RecCNN {m['comcnn_psnr']:.2f} dB "
                  f"{m['comcnn_bpp']:.3f} bpp (payload {m['comcnn_payload_bpp']:.3f}) | JPEG QF{a.qf} "
                  f"{m['jpeg_psnr']:.2f} dB {m['jpeg_bpp']:.3f} bpp", flush=True)
        base = ct.bicubic_jpeg_baseline(imgs, a.qf)
        print(f"no CNN: bicubic down + JPEG QF{a.qf} + bicubic up {base['mean']['bicubic_psnr']:.2f} dB "
              f"{base['mean']['bicubic_bpp']:.3f} bpp (payload)")
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"qf": a.qf, "images": sorted(imgs), "results": results, "bicubic_baseline": base}, f, indent=1)


def rd(out, a):
    """RD curves: each trained state (trained at --qf) with its payload at every --rd-qfs, plain
    JPEG at QF 1…95, on the grey images; BD-rate / BD-PSNR (PCHIP) against JPEG on the overlap.
    Means over images of bpp and PSNR per QF → OUT/rd.json."""
    import jax

    from lic_jax.evaluation.bd import bd_quality, bd_rate
    from lic_jax.models.jiang2017 import jpeg_roundtrip

    imgs = _images(a.images)
    if a.rd_names:
        imgs = {k: imgs[k] for k in a.rd_names.split(",")}
    qfs = [int(q) for q in a.rd_qfs.split(",")]
    jpeg = {"qf": [], "bpp": [], "psnr": []}
    for q in list(range(1, 10)) + list(range(10, 100, 5)):
        r = [jpeg_roundtrip(i[:, :, None], q) for i in imgs.values()]
        jpeg["qf"].append(q)
        jpeg["bpp"].append(float(np.mean([8 * n / i.size for (_, n), i in zip(r, imgs.values())])))
        jpeg["psnr"].append(float(np.mean([ct._psnr(d[:, :, 0], i) for (d, _), i in zip(r, imgs.values())])))
    res = {"images": sorted(imgs), "jpeg": jpeg, "states": {}}
    bic = {"qf": qfs, "bpp": [], "psnr": []}  # no CNN: bicubic ↓ + JPEG + bicubic ↑ (payload bytes only)
    for q in qfs:
        m = ct.bicubic_jpeg_baseline(imgs, q)["mean"]
        bic["bpp"].append(m["bicubic_bpp"])
        bic["psnr"].append(m["bicubic_psnr"])
    for k, f in (("bd_rate_pct", bd_rate), ("bd_psnr_db", bd_quality)):
        try:
            bic[k] = float(f(jpeg["bpp"], jpeg["psnr"], bic["bpp"], bic["psnr"]))
        except Exception as e:
            bic[k] = f"{type(e).__name__}: {e}"
    print("no CNN (bicubic) BD-rate vs JPEG:", bic["bd_rate_pct"], "BD-PSNR:", bic["bd_psnr_db"], flush=True)
    res["bicubic"] = bic
    for name in [n for n in a.rd_states.split(",") if n]:
        d = os.path.join(out, name)
        cfg = get_config("st" if name == "common" else name, a.qf, a.config)
        tr = ct.Trainer(cfg)
        st = tr.restore(os.path.join(d, "ckpt.msgpack"), jax.random.PRNGKey(0))
        ev = ct.export(st, tr)
        curve = {"qf": qfs, "bpp": [], "psnr": [], "step": int(st["step"])}
        for q in qfs:
            m = ct.evaluate_grey(ev, imgs, q, cfg.N, cfg.depth)["mean"]
            curve["bpp"].append(m["comcnn_bpp"])
            curve["psnr"].append(m["comcnn_psnr"])
            print(f"{name} QF{q}: {m['comcnn_psnr']:.2f} dB {m['comcnn_bpp']:.3f} bpp", flush=True)
        for k, f in (("bd_rate_pct", bd_rate), ("bd_psnr_db", bd_quality)):
            try:
                curve[k] = float(f(jpeg["bpp"], jpeg["psnr"], curve["bpp"], curve["psnr"]))
            except Exception as e:  # no overlap / non-monotone: say so
                curve[k] = f"{type(e).__name__}: {e}"
        print(name, "BD-rate vs JPEG:", curve["bd_rate_pct"], "BD-PSNR:", curve["bd_psnr_db"], flush=True)
        res["states"][name] = curve
    with open(os.path.join(out, "rd.json"), "w") as f:
        json.dump(res, f, indent=1)


def diagnose(out, a):
    """The compact image of each trained state against the bicubic downscale, and the MSE with and
    without RecCNN, on 64 held-out 40×40 patches (/work/shared/data/val) and on camera."""
    import jax
    import jax.numpy as jnp

    from lic_jax.models.jiang2017 import bicubic_down2, bicubic_up2, jpeg_np

    val = ct.PatchSampler(ct.load_grey_images("/work/shared/data/val", 20), 40).batch(123, 0, 64)
    cam = _images(a.images)["camera"].astype(np.float32)[None, :, :, None] / 255
    for name in ("common", "st", "approx"):
        cfg = get_config("st" if name == "common" else name, a.qf, a.config)
        tr = ct.Trainer(cfg)
        st = tr.restore(os.path.join(out, name, "ckpt.msgpack"), jax.random.PRNGKey(0))
        for lab, x in (("val 40x40", val), ("camera", cam)):
            y = np.asarray(tr.com.apply({"params": st["pc"]}, x))
            d = np.asarray(bicubic_down2(jnp.asarray(x)))
            u = bicubic_up2(jnp.asarray(jpeg_np(y, a.qf)))
            o = np.asarray(tr.rec.apply({"params": st["pr"], "batch_stats": st["bs"]}, u))
            mse = lambda p, q: float(np.mean((np.clip(p, 0, 1) - q) ** 2))  # noqa: E731
            print(f"{name:6s} {lab:9s} MSE with RecCNN {mse(o, x):.5f}, bicubic-up only {mse(np.asarray(u), x):.5f} | "
                  f"compact − bicubic-down: mean {y.mean() - d.mean():+.4f} rms {np.sqrt(np.mean((y - d) ** 2)):.4f}; "
                  f"clipped {np.mean((y < 0) | (y > 1)):.4f}; std {y.std():.4f} (bicubic-down {d.std():.4f})", flush=True)


def _images(folder):
    imgs = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.png"))):
        with Image.open(f) as im:
            imgs[os.path.basename(f)[:-4]] = np.asarray(im.convert("L"), np.uint8)
    return imgs


def _logged(out, name):
    """The per-step records of a stage's log.jsonl, one per step (a resumed run redoes the steps
    since its last checkpoint: the last record wins)."""
    p = os.path.join(out, name, "log.jsonl")
    if not os.path.exists(p):
        return []
    by_step = {}
    for line in open(p):
        r = json.loads(line)
        if "phase_end" not in r:
            by_step[r["step"]] = r
    return [by_step[k] for k in sorted(by_step)]


def report(out: str, images: str | None = None, config: str = "short", qf: int = 10) -> str:
    """Markdown: per phase (from the logged steps, every ``log_every``), loss and gradient norm of
    the first and last 3 logged steps; the paired st / approx ComCNN losses (same batches); results."""
    sched = ct.schedule(get_config("st", qf, config))
    lines = ["| run | phase | steps | loss (first 3 logged → last 3) | loss / MSE(bicubic↑ JPEG) (same batches) | grad norm (same) "
             "| cos(st, approx) |", "|---|---|---|---|---|---|---|"]
    logs = {n: _logged(out, n) for n in ("common", "st", "approx")}
    for name, recs in logs.items():
        for pi, (ph, n) in enumerate(sched):
            rs = [r for r in recs if r["phase_index"] == pi]
            if not rs:
                continue
            start = sum(m for _, m in sched[:pi])
            a, b = rs[:3], rs[-3:]
            mean = lambda xs, k: float(np.mean([x[k] for x in xs]))  # noqa: E731
            rat = lambda xs: float(np.mean([x["loss"] / x["jpeg_mse"] for x in xs]))  # noqa: E731
            jm = f"{rat(a):.3f} → {rat(b):.3f}" if "jpeg_mse" in rs[0] else ""
            cos = f"{mean(a, 'cos_st_approx'):.3f} → {mean(b, 'cos_st_approx'):.3f}" if "cos_st_approx" in rs[0] else ""
            lines.append(f"| {name} | {ph} #{pi} | {start}–{rs[-1]['step']} | {mean(a, 'loss'):.5f} → {mean(b, 'loss'):.5f} "
                         f"| {jm} | {mean(a, 'gnorm'):.3g} → {mean(b, 'gnorm'):.3g} | {cos} |")
    st = {r["step"]: r for r in logs["st"]}
    pairs = [(st[r["step"]]["loss"], r["loss"]) for r in logs["approx"]
             if r["phase"] == "com" and r["step"] in st and st[r["step"]]["phase"] == "com"]
    if pairs:
        ratio = np.array([a / b for a, b in pairs])
        lines += ["", f"Paired ComCNN-phase losses (same step = same batch, {len(pairs)} logged steps): "
                      f"st / approx mean {ratio.mean():.4f}, st lower on {int((ratio < 1).sum())} of {len(pairs)}."]
    p = os.path.join(out, "results.json")
    if os.path.exists(p):
        res = json.load(open(p))
        lines += ["", f"| state | step | ComCNN+JPEG+RecCNN PSNR | bpp (file) | bpp (JPEG payload) | JPEG QF{res['qf']} PSNR "
                  "| JPEG bpp | JPEG at ≤ equal bpp |", "|---|---|---|---|---|---|---|---|"]
        imgs = _images(images) if images else {}
        for name, r in res["results"].items():
            m = r["rows"]["mean"]
            same = ""
            if imgs:  # plain JPEG at the largest QF with ≤ the same bits, per image
                eq = [ct.jpeg_at_bpp(imgs[k], v["comcnn_bpp"]) for k, v in r["rows"].items() if k in imgs]
                same = (f" {np.mean([e['psnr'] for e in eq]):.2f} dB @ {np.mean([e['bpp'] for e in eq]):.3f} bpp "
                        f"(QF {min(e['qf'] for e in eq)}–{max(e['qf'] for e in eq)}) |")
            lines.append(f"| {name} | {r['step']} | {m['comcnn_psnr']:.2f} dB | {m['comcnn_bpp']:.3f} | "
                         f"{m['comcnn_payload_bpp']:.3f} | {m['jpeg_psnr']:.2f} dB | {m['jpeg_bpp']:.3f} |{same}")
        if "bicubic_baseline" in res:
            b = res["bicubic_baseline"]["mean"]
            lines.append(f"| no CNN (bicubic↓ JPEG bicubic↑) | – | {b['bicubic_psnr']:.2f} dB | – | {b['bicubic_bpp']:.3f} | "
                         f"| | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
