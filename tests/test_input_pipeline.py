"""Input pipeline: folders/globs, deterministic resumable batches, per-host sharding, prefetch, TFDS."""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pytest
from conftest import require
from PIL import Image

from lic_jax.train.input_pipeline import (
    FolderSource,
    TrainBatches,
    WaitMeter,
    center_crop,
    eval_batches,
    list_images,
    make_source,
    parse_scale,
    random_crop_flip,
    random_scaled_crop_flip,
)


def _write_images(d, n, size=(40, 48), mode="RGB", prefix="img"):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        shape = (size[0], size[1], 3) if mode == "RGB" else size
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        a.flat[0] = i  # identify the image
        p = os.path.join(d, f"{prefix}{i:03d}.png")
        Image.fromarray(a, mode).save(p)
        paths.append(p)
    return paths


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "imgs"
    _write_images(str(d), 10)
    (d / "notes.txt").write_text("not an image")
    return str(d)


def test_list_images_folder_glob_list(folder, tmp_path):
    files = list_images(folder)
    assert len(files) == 10 and all(f.endswith(".png") for f in files)
    assert files == sorted(files)
    assert list_images(os.path.join(folder, "img00*.png")) == files[:10]
    assert list_images(f"{files[0]},{files[1]}") == files[:2]
    sub = tmp_path / "imgs" / "sub"
    _write_images(str(sub), 2, prefix="z")
    assert len(list_images(folder)) == 12  # recursive
    with pytest.raises(FileNotFoundError):
        list_images(str(tmp_path / "missing"))


def test_grey_images_become_rgb(tmp_path):
    _write_images(str(tmp_path / "g"), 2, size=(20, 30), mode="L")
    src = FolderSource(str(tmp_path / "g"))
    a = src[0]
    assert a.shape == (20, 30, 3) and a.dtype == np.uint8
    assert np.array_equal(a[..., 0], a[..., 2])


def test_crop_pads_small_images_and_flips():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    out = random_crop_flip(img, 16, np.random.default_rng(0))
    assert out.shape == (16, 16, 3)
    c = center_crop(np.zeros((300, 200, 3), np.uint8), 256)
    assert c.shape == (256, 256, 3)
    # flips only permute pixels of the crop
    big = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    seen = set()
    for s in range(16):
        o = random_crop_flip(big, 64, np.random.default_rng(s))
        seen.add(o.tobytes() == big.tobytes())
        assert sorted(o.ravel().tolist()) == sorted(big.ravel().tolist())
    assert seen == {True, False}  # some flipped, some not


def _ramp_slope(crop: np.ndarray) -> float:
    """Mean horizontal grey-level step per pixel of a crop of a horizontal ramp (least squares)."""
    row = crop[..., 0].astype(np.float64).mean(axis=0)
    return float(np.polyfit(np.arange(row.size), row, 1)[0])


def test_scaled_crop_downscales_by_the_drawn_factor():
    """A horizontal ramp of 0.2 grey levels per pixel, downscaled by s, has slope 0.2/s: the measured
    slope of each crop (flips off) gives the factor actually applied, which must lie in the range."""
    w = 1200
    img = np.repeat(np.repeat((np.arange(w) * 0.2)[None, :, None], 900, 0), 3, 2).round().astype(np.uint8)
    fixed = random_scaled_crop_flip(img, 64, np.random.default_rng(0), (0.5, 0.5), hflip=False)
    assert fixed.shape == (64, 64, 3) and fixed.dtype == np.uint8
    assert abs(_ramp_slope(fixed) - 0.4) < 0.01  # s = 0.5 → twice the slope (uint8 rounding: ±0.002)
    factors = [0.2 / _ramp_slope(random_scaled_crop_flip(img, 64, np.random.default_rng(k), (0.5, 0.75),
                                                         hflip=False)) for k in range(40)]
    assert min(factors) > 0.49 and max(factors) < 0.76
    assert max(factors) - min(factors) > 0.15  # the factor really is drawn over the range
    # deterministic in the generator; images too small to downscale fall back to a plain crop
    again = random_scaled_crop_flip(img, 64, np.random.default_rng(0), (0.5, 0.5), hflip=False)
    assert np.array_equal(fixed, again)
    small = np.random.default_rng(2).integers(0, 256, (60, 70, 3), dtype=np.uint8)
    assert random_scaled_crop_flip(small, 64, np.random.default_rng(3), (0.5, 0.6)).shape == (64, 64, 3)
    assert parse_scale("") is None and parse_scale("0.5,0.75") == (0.5, 0.75) and parse_scale("0.6") == (0.6, 0.6)
    for bad in ("0,0.5", "0.8,0.5", "0.5,1.5"):
        with pytest.raises(ValueError, match="data.scale"):
            parse_scale(bad)


def test_scaled_batches_deterministic_and_resumable(tmp_path):
    _write_images(str(tmp_path / "big"), 3, size=(120, 150))
    src = FolderSource(str(tmp_path / "big"), cache=True)
    a = TrainBatches(src, 4, 32, seed=1, prefetch=0, scale="0.5,0.75")
    b = TrainBatches(src, 4, 32, seed=1, prefetch=2, workers=2, scale="0.5,0.75")
    seq_a = [x for _, x in a.iterate(0, 5)]
    assert all(np.array_equal(x, y) for x, y in zip(seq_a[2:], [x for _, x in b.iterate(2, 5)]))
    plain = TrainBatches(src, 4, 32, seed=1, prefetch=0)
    assert not np.array_equal(plain.batch(0), seq_a[0])  # the option changes the data


def test_batches_deterministic_and_resumable(folder):
    src = FolderSource(folder, cache=True)
    a = TrainBatches(src, 4, 16, seed=3, prefetch=0)
    b = TrainBatches(src, 4, 16, seed=3, prefetch=2, workers=2)
    seq_a = [x for _, x in a.iterate(0, 7)]
    seq_b = [x for _, x in b.iterate(0, 7)]
    assert all(np.array_equal(x, y) for x, y in zip(seq_a, seq_b))
    # resuming at step 4 continues exactly
    resumed = [x for _, x in b.iterate(4, 7)]
    assert all(np.array_equal(x, y) for x, y in zip(seq_a[4:], resumed))
    assert [s for s, _ in b.iterate(4, 7)] == [4, 5, 6]
    # a different seed changes the data
    c = TrainBatches(src, 4, 16, seed=4, prefetch=0)
    assert not np.array_equal(c.batch(0), seq_a[0])
    assert seq_a[0].dtype == np.uint8 and seq_a[0].shape == (4, 16, 16, 3)


def test_epochs_visit_every_image_once(folder):
    src = FolderSource(folder)
    tb = TrainBatches(src, 5, 8, seed=0, prefetch=0)
    for epoch in range(3):
        idx = tb.global_indices(2 * epoch) + tb.global_indices(2 * epoch + 1)
        assert sorted(idx) == list(range(10))
    assert tb.global_indices(0) + tb.global_indices(1) != tb.global_indices(2) + tb.global_indices(3)


def test_per_process_shards_form_the_global_batch(folder):
    src = FolderSource(folder, cache=True)
    whole = TrainBatches(src, 8, 16, seed=1, prefetch=0)
    parts = [TrainBatches(src, 8, 16, seed=1, process_index=p, process_count=4, prefetch=0) for p in range(4)]
    for step in (0, 1, 5):
        assert np.array_equal(whole.batch(step), np.concatenate([p.batch(step) for p in parts]))
    with pytest.raises(ValueError):
        TrainBatches(src, 6, 16, process_count=4)


@pytest.mark.skipif(importlib.util.find_spec("grain") is None, reason="needs grain (the [data] extra)")
@pytest.mark.parametrize("processes", [0, 2])
def test_grain_stream_equals_threaded_batches(tmp_path, processes):
    """data.loader='grain' (``GrainBatches``) yields the threaded loader's batch of every step, from any
    start step, for every process's shard, with Grain threads or Grain worker processes."""
    from lic_jax.train.grain_pipeline import GrainBatches

    _write_images(str(tmp_path / "big"), 7, size=(90, 120))
    src = FolderSource(str(tmp_path / "big"))
    for pcount, pidx, start in ((1, 0, 0), (2, 1, 5)):
        ref = TrainBatches(src, 4, 32, seed=2, process_index=pidx, process_count=pcount, prefetch=0, scale="0.5,0.8")
        got = list(GrainBatches(ref, threads=2, prefetch=2, processes=processes).iterate(start, start + 6))
        assert [s for s, _ in got] == list(range(start, start + 6))
        for s, b in got:
            assert b.shape == (4 // pcount, 32, 32, 3) and b.dtype == np.uint8
            assert np.array_equal(b, ref.batch(s)), (pcount, pidx, s)


def test_wait_meter_counts_only_the_time_blocked_on_input():
    def slow(n, dt):
        for i in range(n):
            time.sleep(dt)
            yield i

    m = WaitMeter(slow(4, 0.05))
    t0 = time.perf_counter()
    for _ in m:
        time.sleep(0.05)  # the consumer's own work is not input wait
    total = time.perf_counter() - t0
    # 4 × 0.05 s inside next(); the consumer's 4 × 0.05 s are the rest of the total
    assert 0.195 <= m.waited <= total - 0.195, (m.waited, total)
    assert m.blocked == m.waited
    # a wait while the consumer still has work in flight (idle() false) is blocked time, not input wait
    flags = iter([True, False, True, False, True])
    m = WaitMeter(slow(4, 0.05), idle=lambda: next(flags))
    list(m)
    assert 0.195 <= m.blocked and 0.095 <= m.waited <= m.blocked - 0.095, (m.waited, m.blocked)


def test_eval_batches_pad_with_zero_weight(folder):
    src = FolderSource(folder)
    out = list(eval_batches(src, 4, 16))
    assert len(out) == 3
    assert [float(w.sum()) for _, w in out] == [4.0, 4.0, 2.0]
    two = [list(eval_batches(src, 4, 16, process_index=p, process_count=2)) for p in range(2)]
    for k in range(3):
        assert np.array_equal(np.concatenate([two[0][k][0], two[1][k][0]]), out[k][0])
        assert np.array_equal(np.concatenate([two[0][k][1], two[1][k][1]]), out[k][1])
    assert len(list(eval_batches(src, 4, 16, limit=5))) == 2


# -- tensorflow-datasets (array_record, no TensorFlow) --------------------------------------------
def _tiny_tfds_builder(image_dir):
    tfds = require("tensorflow_datasets")  # a missing peer fails under LIC_JAX_REQUIRE_PEERS=1

    class LicTinyImages(tfds.core.GeneratorBasedBuilder):
        """A tiny image dataset built from local PNG files (for tests)."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples("train"), "validation": self._generate_examples("val")}

        def _generate_examples(self, split):
            for p in sorted(os.listdir(os.path.join(image_dir, split))):
                yield p, {"image": os.path.join(image_dir, split, p)}

    return tfds, LicTinyImages


def test_tfds_array_record_source(tmp_path):
    img_dir = tmp_path / "raw"
    train_paths = _write_images(str(img_dir / "train"), 6, size=(24, 32))
    _write_images(str(img_dir / "val"), 2, size=(24, 32))
    tfds, builder_cls = _tiny_tfds_builder(str(img_dir))
    data_dir = str(tmp_path / "tfds")
    builder = builder_cls(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()

    src = make_source("tfds:lic_tiny_images:train", tfds_data_dir=data_dir)
    assert len(src) == 6
    got = sorted(int(src[i][0, 0, 0]) for i in range(len(src)))
    assert got == list(range(6))  # every image, decoded to uint8 RGB without TensorFlow
    ref = {int(np.asarray(Image.open(p))[0, 0, 0]): np.asarray(Image.open(p)) for p in train_paths}
    a = src[0]
    assert a.dtype == np.uint8 and a.shape == (24, 32, 3)
    assert np.array_equal(a, ref[int(a[0, 0, 0])])
    val = make_source("tfds:lic_tiny_images", tfds_data_dir=data_dir, default_split="validation")
    assert len(val) == 2
    tb = TrainBatches(src, 4, 16, seed=0, prefetch=1)
    (s, x), = list(tb.iterate(0, 1))
    assert s == 0 and x.shape == (4, 16, 16, 3)


def test_mask_channel_travels_with_the_pixels(tmp_path):
    """data.masks (GAN t_a, issue 20): FolderSource appends each image's user mask as a 4th
    channel; crops, scaled crops and flips move it with the pixels, and the RGB channels are exactly
    those of the mask-free pipeline (same draws; PIL's RGBA resize would premultiply them by it)."""
    img_dir, mask_dir = tmp_path / "img", tmp_path / "masks"
    paths = _write_images(str(img_dir / "sub"), 3, size=(64, 80))
    os.makedirs(mask_dir / "sub")
    for p in paths:  # the mask is a function of the pixels, so alignment can be checked after cropping
        a = np.asarray(Image.open(p))
        Image.fromarray(((a[..., 0] >= 128) * 255).astype(np.uint8)).save(mask_dir / "sub" / os.path.basename(p))
    plain, masked = FolderSource(str(img_dir)), make_source(str(img_dir), mask_dir=str(mask_dir))
    a4 = masked[1]
    assert a4.shape == (64, 80, 4)
    np.testing.assert_array_equal(a4[..., :3], plain[1])
    np.testing.assert_array_equal(a4[..., 3], (plain[1][..., 0] >= 128) * 255)
    for scale in ("", "0.5,0.75"):
        b3 = TrainBatches(plain, 4, 32, seed=3, scale=scale).batch(5)
        b4 = TrainBatches(masked, 4, 32, seed=3, scale=scale).batch(5)
        assert b4.shape == (4, 32, 32, 4)
        np.testing.assert_array_equal(b4[..., :3], b3)
        if not scale:  # plain crops: the mask channel is exactly the thresholded crop
            np.testing.assert_array_equal(b4[..., 3], (b3[..., 0] >= 128) * 255)
        else:  # resampled: the bilinear mask agrees with the Lanczos pixels on most of the crop
            agree = np.mean((b4[..., 3] >= 128) == (b3[..., 0] >= 128))
            assert agree > 0.5, agree  # measured 0.833 on these noise images (3x its 0.167 disagreement)
    with pytest.raises(ValueError, match="image folders"):
        make_source("tfds:mnist", mask_dir=str(mask_dir))
    os.remove(mask_dir / "sub" / os.path.basename(paths[0]))
    with pytest.raises(ValueError, match="no such file"):
        masked[0]


def test_masks_refused_outside_gan_training(tmp_path):
    """data.masks / data.val_masks with a rate–distortion model: a one-line configuration error before any work."""
    from configs import smoke

    from lic_jax.train import trainer

    for key in ("masks", "val_masks"):
        cfg = smoke.get_config()
        cfg.data[key] = str(tmp_path)
        with pytest.raises(ValueError, match=f"data.{key} .*GAN training only"):
            trainer.train_and_evaluate(cfg, str(tmp_path / "run"))
