"""Stripe-orientation fidelity (SOF): does a reconstruction keep the *direction* of fine stripes?

Definition: ``shared/docs/SYSTEMS.md`` §13 (the measure proposed for seed 000, Abbas & Kwon's claim
that MS-SSIM-optimised codecs turn fine stripes while MSE ones blur them). Pure numpy/scipy, float64;
images are (H, W) grey or (H, W, 3) RGB arrays on [0, 255] (uint8 or float); X = original, Y =
reconstruction.

1. Luma Y′ = 0.299 R + 0.587 G + 0.114 B (BT.601, unrounded, :func:`~lic_jax.evaluation.hvs.rgb_to_luma`);
   grey input is used as is.
2. Gradients Ix = ∂/∂x (x = column, axis 1), Iy = ∂/∂y (y = row, axis 0, pointing down): separable
   Gaussian-derivative filters, σ_d = 1.0 px, truncated at 4σ, ``reflect`` borders (scipy's
   half-sample symmetric mode).
3. Structure tensor J = G_{σ_i} ∗ [Ix², IxIy; IxIy, Iy²], σ_i = 3.0 px (truncated at 4σ, reflect);
   λ₁ ≥ λ₂ its eigenvalues; **gradient orientation** θ = ½·atan2(2J_xy, J_xx − J_yy) in degrees,
   measured from +x towards +y (so a grating 128 + a·sin(2π(x cos φ + y sin φ)/p) has θ = φ and its
   stripes run along θ + 90°); coherence C = (λ₁ − λ₂)/(λ₁ + λ₂ + 1e-6); energy E = λ₁ + λ₂.
   Transposing an image maps θ → 90° − θ (mod 180°).
4. Stripe mask M from the original X only (so it is the same for every codec): C_X ≥ 0.75, a strength
   test — by default **local contrast** s_X ≥ 10, s = standard deviation of Y′ over the σ_i = 3 Gaussian
   window (:func:`local_contrast`; a deviation, see below), or with ``energy_test="s13"`` §13's
   E_X ≥ max(64, 70th percentile of E_X) —, and periodicity: the 32×32 patch centred on the pixel,
   mean-removed and Hann-windowed (zero-padded to 64×64 for the FFT), has its strongest non-DC
   power-spectrum peak at a period ≤ 16 px up to the grid's resolution (radius ≥ 4 − ½ bins of the
   64-grid) with peak/mean(non-DC power) ≥ 4; computed on a stride-8 grid (patch centres 8i + 4,
   i.e. the centre of each 8×8 block) and upsampled nearest (each 8×8 block
   takes its centre's value), reflect-padded at the borders. Then a 3×3 binary opening, connected
   components (8-connectivity) < 256 px dropped, an 8-px border cleared. User ROIs (rectangles
   ``(top, left, bottom, right)``, half-open pixel ranges) replace the automatic mask.
5. On M, with weights w = C_X·E_X (normalised) and Δθ = wrap(θ_Y − θ_X) ∈ (−90°, 90°]:
   * ``maoe``: Σ w·|Δθ| in degrees (0 perfect, 45 random);
   * ``flip_rate``: Σ w·[|Δθ| > 22.5° and C_Y ≥ 0.5] (confidently wrong direction);
   * ``washout_rate``: Σ w·[C_Y < 0.3] (stripes erased); ``coherence_ratio``: Σ w·C_Y/C_X (1 = kept);
   * ``ohd_mean`` / ``ohd_p95``: orientation-histogram Jensen-Shannon divergence (base 2, ∈ [0, 1])
     over 32×32 tiles on a stride-16 grid (top-left corners 0, 16, …) with ≥ 50 % of their pixels in
     M; per tile, the histograms of θ_X and θ_Y over the tile's mask pixels, weighted by E_X resp.
     E_Y, 36 bins of 5° over [0°, 180°), circularly smoothed with (1, 2, 1)/4; mean and 95th
     percentile (numpy's linear interpolation) over the tiles;
   * spectral check (``spectral=True``): per OHD tile, the dominant non-DC peak of the mean-removed,
     Hann-windowed 32×32 power spectra of X and Y (zero-padded to 64×64, half-bin resolution);
     ``spectral_angle_err``: mean |wrap| difference of the peak directions (degrees, mod 180°),
     ``spectral_radius_err``: mean |r_Y − r_X|/r_X of the peak radii. Both are quantised by the
     frequency grid (a 16-px grating's peak sits 4 bins from DC: ~14° angle steps). A tile where Y
     has no AC power counts as 90° / 1.

Deviations from §13 (and why):

* **Mask strength test: local contrast instead of energy (default; ``energy_test="s13"`` restores §13).** §13's
  E_X ≥ max(64, P70(E_X)) excludes the finest stripes, the very ones the study is about: E is the σ_d = 1
  derivative energy, which for a sinusoid of period p and amplitude a is ≈ ½a²k²·exp(−k²σ_d²), k = 2π/p,
  falling steeply below p ≈ 6 px, so Barbara's trousers (period ≈ 3.1 px) and tablecloth (≈ 2.4 px) have median
  E 37–56 < the cut-off 81.6 although their contrast is high (median s 28–35 resp. 18). The default replaces the
  energy test by s_X ≥ 10 (a sinusoid of amplitude a has s = a/√2·√(1 − exp(−k²σ_i²)), 0.87–1 × a/√2 for
  periods 2–16 px, so s ≥ 10 ≈ amplitude ≥ 14 grey levels at any stripe period); coherence,
  periodicity, opening, component size and border are unchanged. Measured on barbara.png (512² grey;
  rectangles (top, left, bottom, right) drawn on the image, all stripes resp. none inside; coverage = fraction
  of the rectangle in M):

  option (strength test; C ≥ 0.75 and periodicity    image   trousers  trousers  trousers  table-  scarf   face
  in every row)                                       mask    knee L    leg R     bottom    cloth           floor arm
  (a) §13: E ≥ max(64, P70(E) = 81.6)                 4.1 %    0 %       0 %      13.0 %     0 %    20.5 %  0 %
  (b) contrast s ≥ 10 (**the default**)               14.0 %  54.2 %    56.0 %    50.8 %    49.7 %  33.8 %  0 %
  (b) contrast s ≥ 8                                  14.2 %  54.2 %    56.0 %    50.8 %    49.7 %  33.8 %  0 %
  (b) contrast s ≥ 15                                 13.0 %  53.4 %    56.0 %    50.8 %    44.2 %  31.7 %  0 %
  (b′) s ≥ max(10, P70(s) = 25.0)                     7.6 %   45.4 %    50.9 %    47.1 %     0 %    22.4 %  0 %
  (c) E ≥ 0.05 · local variance s²                    11.1 %  22.3 %    12.5 %    20.5 %    52.8 %  32.8 %  0 %
  no strength test                                    14.5 %  54.2 %    56.0 %    50.8 %    52.8 %  33.8 %  0 %

  Rectangles: trousers knee L (300, 170, 400, 245), leg R (300, 360, 410, 415), bottom (440, 300, 505, 395);
  tablecloth (200, 8, 330, 75); scarf (180, 200, 260, 320); face (95, 275, 160, 325); floor (140, 120, 250, 185);
  arm (262, 410, 300, 470) (0 % under every option). The rectangles of the earlier measurement, trousers
  (380, 200, 500, 330) and tablecloth (250, 20, 450, 120), part background: (a) 0 % / 0 %, (b) 36.4 % / 26.0 %.
  Why (b): it is frequency-neutral and keeps a noise/weak-texture floor (on fence_1.4.06 / grating_1.4.07 it
  keeps 22 % / 24 % of the picture against 25 % / 30 % with no strength test; on Barbara the difference is small,
  14.0 vs 14.5 %); the choice of 10 is not critical (8–15 give the same Barbara coverage within 6 points).
  (b′), a percentile on contrast like §13's, drops the tablecloth (its s ≈ 18 < P70 25); (c) an energy/variance
  ratio is a frequency test in disguise (E/s² ≈ k²·exp(−k²σ_d²)), it halves the trousers. On the flat side the
  face, floor and arm stay at 0 % because of the periodicity test, not the strength test: with periodicity
  removed the contrast rule covers the face 39 %, the arm 23 %, 36 % of the picture (tests/test_sof.py). House
  (house.png, 512² RGB): the siding is ~2–3 px lines of ±1.5 grey levels on a near-saturated wall (C ≥ 0.75 on
  16–20 %, periodic on 0–17 % of siding rectangles (208, 388, 232, 404) and (260, 245, 274, 282)): 0 % under (a)
  and (b) — no strength test can rescue it; pass it as an ROI. The whole House mask is 1.0 % (a) / 1.5 % (b),
  on window mullions, shutters and roof edges; sky and the bottom strip 0 % either way. Consequence to keep in
  mind: the weights C_X·E_X stay §13's, so fine stripes weigh less than their area — on Barbara the trouser +
  tablecloth rectangles hold 41 % of the default mask's pixels but 19 % of its weight.

* Orientation histograms use **linear (soft) binning onto bin centres 0°, 5°, …, 175°** (each θ
  votes to its two nearest centres, circularly) instead of hard half-open bins [5k, 5k+5): axis
  -aligned and 45° stripes sit exactly on hard bin edges, where float noise of 1e-15° flips the
  bin, and hard edges are not symmetric under θ → 90° − θ, so transposing an image changed OHD.
  With centres on multiples of 5° the binning is continuous and exactly transposition-symmetric.
* The patch spectra are zero-padded to 64×64 (a half-bin grid) before the peak is located. On the
  plain 32×32 grid the period test is quantised to whole bins: a 16-px grating at 45° peaks at bin
  (1, 1) = period 22.6 px and was rejected (measured: empty mask for the 16-px gratings at 45° and
  135°, kept at every other orientation); on the 64-grid it peaks at (3, 3) = 15.1 px. The peak/mean
  ratio keeps its meaning (zero padding leaves the mean power per bin at Σx²). The spectral check
  uses the same padded spectra.
* "Period ≤ 16 px" is tested as peak radius ≥ 4 − ½ bins of the 64-grid (nominal period ≤ 18.3 px):
  an exact 16-px grating sits on the boundary and its peak lands on a bin of radius 3.6 or 4.5
  depending on orientation (measured with a strict radius ≥ 4: 16-px gratings at 30°, 60°, 120°,
  150° lost 94–100 % of their mask), while §13's own validation uses 16-px gratings.
* A tile whose Y histogram has no energy (a flat reconstruction) gets a uniform Y histogram (no
  orientation information), so a fully erased tile scores a high JSD instead of NaN. (X tiles always
  have energy: they are ≥ 50 % mask.)
* ``coherence_ratio`` is the w-weighted mean of C_Y/C_X (§13 says "mean C_Y/C_X" without weights;
  the weights make it comparable with the other numbers). It is 1, not 0, for an identical image.
* Where the structure tensor has no orientation at all (J_xy = 0 and J_xx = J_yy, e.g. a flat area of a
  heavily compressed Y), θ is set to 45° (atan2(0, 0) = 0 otherwise): 45° is the fixed point of θ → 90° − θ,
  so transposition keeps |Δθ|. Measured before the fix: a JPEG QF 10 Y with flat blocks gave MAOE 32.22°
  and 29.59° for the image and its transpose. Such pixels have C_Y = 0 (washout) and no weight in OHD.
* Not deviations but readings of unstated details: patch mean removed (Hann-weighted mean) before
  windowing, so the windowed DC is exactly zero and its leakage cannot be the "peak"; the energy
  percentile is over all pixels of X.
* Known limitation of ``energy_test="s13"`` only: the 70th-percentile energy rule assumes stripes are a
  minority of the picture (Barbara, House). On a full-frame texture it keeps only the strongest 30 % of it;
  the default contrast test has no percentile.

Known limitation of the flip rate (measured, not changed): a Gaussian blur σ = 2 of Barbara (grey, rounded)
gives MAOE 26.9°, flip 0.360, washout 0.030, OHD mean 0.496 (default mask; §13's mask: 27.6°, 0.368, 0.027,
0.743) — once the finest stripes are gone, the coarser structure left under them (folds, seams) has another
orientation and C_Y ≥ 0.5, so pure blur counts as "flip" there. On isolated synthetic gratings blur reads as
washout (tests/test_sof.py). Compare codecs against an MSE twin / JPEG at equal rate, not against zero.

An empty mask is not an error: :func:`sof` then returns ``mask_px = 0``, every number ``None`` and a
``note``; shape mismatches, a side < 48 px and bad ROIs raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .hvs import rgb_to_luma

__all__ = ["MIN_SIDE", "FIELDS", "ENERGY_TESTS", "luma", "structure_tensor", "local_contrast", "stripe_mask",
           "wrap_deg", "orientation_histograms", "original_fields", "sof", "sof_maps", "sof_row", "write_overlay"]

SIGMA_D = 1.0
SIGMA_I = 3.0
TRUNCATE = 4.0
C_MASK, E_FLOOR, E_PERCENTILE = 0.75, 64.0, 70.0
CONTRAST_MIN = 10.0  # default mask test: σ_i-window standard deviation of Y′ (grey levels)
ENERGY_TESTS = ("contrast", "s13")
PATCH, NFFT, GRID, MAX_PERIOD, PEAK_RATIO = 32, 64, 8, 16.0, 4.0
MIN_COMPONENT, BORDER = 256, 8
FLIP_DEG, FLIP_C, WASH_C = 22.5, 0.5, 0.3
TILE, TILE_STRIDE, TILE_MIN_FRAC, NBINS = 32, 16, 0.5, 36
MIN_SIDE = 48

# the numbers sof() reports (None for an empty mask; spectral_* only with spectral=True)
FIELDS = ("maoe", "flip_rate", "washout_rate", "coherence_ratio", "ohd_mean", "ohd_p95", "ohd_tiles",
          "spectral_angle_err", "spectral_radius_err")


def luma(img) -> np.ndarray:
    """Y′ (BT.601) of an (H, W, 3) image on [0, 255] as float64; (H, W) / (H, W, 1) grey as is (§13.1)."""
    return rgb_to_luma(img)


def structure_tensor(lum: np.ndarray):
    """(θ in degrees ∈ (−90, 90], coherence C, energy E) of a float64 (H, W) luma (§13.2–3)."""
    from scipy.ndimage import gaussian_filter, gaussian_filter1d

    g = np.asarray(lum, np.float64)
    kw = {"mode": "reflect", "truncate": TRUNCATE}
    ix = gaussian_filter1d(gaussian_filter1d(g, SIGMA_D, axis=1, order=1, **kw), SIGMA_D, axis=0, **kw)
    iy = gaussian_filter1d(gaussian_filter1d(g, SIGMA_D, axis=0, order=1, **kw), SIGMA_D, axis=1, **kw)
    jxx = gaussian_filter(ix * ix, SIGMA_I, **kw)
    jyy = gaussian_filter(iy * iy, SIGMA_I, **kw)
    jxy = gaussian_filter(ix * iy, SIGMA_I, **kw)
    theta = np.degrees(0.5 * np.arctan2(2.0 * jxy, jxx - jyy))
    # no orientation at all (J_xy = J_xx − J_yy = 0, e.g. a flat area): 45°, the fixed point of θ → 90° − θ,
    # so that transposition keeps |Δθ| (atan2(0, 0) = 0 would turn into 0 instead of 90 − 0)
    theta[(jxy == 0) & (jxx == jyy)] = 45.0
    tr = jxx + jyy
    diff = np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy * jxy)  # λ₁ − λ₂
    energy = np.maximum(tr, 0.0)
    coh = diff / (energy + 1e-6)
    return theta, coh, energy


def wrap_deg(d):
    """Orientation difference wrapped to (−90°, 90°]."""
    d = np.asarray(d, np.float64)
    w = np.mod(d + 90.0, 180.0) - 90.0  # [−90, 90)
    return np.where(w == -90.0, 90.0, w)


def _hann2d(n: int = PATCH) -> np.ndarray:
    h = np.hanning(n + 2)[1:-1]  # strictly positive taps, symmetric
    return np.outer(h, h)


def _peaks(patches: np.ndarray, nfft: int = NFFT):
    """Dominant non-DC peak of mean-removed, Hann-windowed patches (..., n, n), zero-padded to
    nfft × nfft: (peak power, mean non-DC power, u, v) with u = vertical, v = horizontal signed
    frequency in cycles per nfft px (period = nfft / hypot(u, v))."""
    n = patches.shape[-1]
    win = _hann2d(n)
    mean = np.sum(patches * win, axis=(-2, -1), keepdims=True) / win.sum()
    p = np.abs(np.fft.fft2((patches - mean) * win, s=(nfft, nfft))) ** 2
    p = p.reshape(p.shape[:-2] + (nfft * nfft,))
    p[..., 0] = 0.0  # DC (exactly 0 after the weighted mean removal, up to rounding)
    k = np.argmax(p, axis=-1)
    peak = np.take_along_axis(p, k[..., None], axis=-1)[..., 0]
    meanp = p.sum(axis=-1) / (nfft * nfft - 1)
    f = np.fft.fftfreq(nfft, 1.0 / nfft)
    return peak, meanp, f[k // nfft], f[k % nfft]


def _periodic_grid(lum: np.ndarray) -> np.ndarray:
    """Periodicity test of §13.4 on the stride-8 grid, upsampled nearest to (H, W) (bool)."""
    h, w = lum.shape
    nh, nw = -(-h // GRID), -(-w // GRID)
    half = PATCH // 2
    # centre of grid cell i is 8i + 4; its patch spans [8i + 4 − 16, 8i + 4 + 16)
    pad_b = max(0, GRID * (nh - 1) + GRID // 2 + half - h)
    pad_r = max(0, GRID * (nw - 1) + GRID // 2 + half - w)
    padded = np.pad(lum, ((half, pad_b), (half, pad_r)), mode="symmetric")  # = scipy 'reflect'
    view = np.lib.stride_tricks.sliding_window_view(padded, (PATCH, PATCH))
    off = GRID // 2
    out = np.zeros((nh, nw), bool)
    for r0 in range(0, nh, 8):  # chunks of grid rows bound the FFT memory
        pat = view[off + GRID * r0: off + GRID * min(nh, r0 + 8): GRID, off: off + GRID * nw: GRID]
        peak, meanp, u, v = _peaks(pat)
        radius = np.hypot(u, v)
        ok = (meanp > 0) & (radius >= NFFT / MAX_PERIOD - 0.5) & (peak >= PEAK_RATIO * np.where(meanp > 0, meanp, 1.0))
        out[r0: r0 + ok.shape[0]] = ok
    return np.repeat(np.repeat(out, GRID, 0), GRID, 1)[:h, :w]


def _roi_mask(shape, rois) -> np.ndarray:
    m = np.zeros(shape, bool)
    h, w = shape
    for r in rois:
        if len(r) != 4 or not all(float(v).is_integer() for v in r):
            raise ValueError(f"ROI {r!r}: expected 4 integers (top, left, bottom, right)")
        t, l, b, rr = (int(v) for v in r)
        if not (0 <= t < b <= h and 0 <= l < rr <= w):
            raise ValueError(f"ROI {r!r} is empty or outside the {h}x{w} image (top, left, bottom, right)")
        m[t:b, l:rr] = True
    return m


def local_contrast(lum: np.ndarray) -> np.ndarray:
    """Local standard deviation of a float64 (H, W) luma over the structure tensor's Gaussian window
    (σ_i = 3 px, truncated at 4σ, reflect): sqrt(G ∗ Y′² − (G ∗ Y′)²). A sinusoid of amplitude a and
    period p gives ≈ a/√2·√(1 − exp(−(2πσ_i/p)²)), 0.87–1 × a/√2 for p = 2–16 px (the default mask's
    contrast test, see the module docstring)."""
    from scipy.ndimage import gaussian_filter

    g = np.asarray(lum, np.float64)
    kw = {"mode": "reflect", "truncate": TRUNCATE}
    mu = gaussian_filter(g, SIGMA_I, **kw)
    return np.sqrt(np.maximum(gaussian_filter(g * g, SIGMA_I, **kw) - mu * mu, 0.0))


def _check_energy_test(energy_test: str) -> str:
    if energy_test not in ENERGY_TESTS:
        raise ValueError(f"energy_test must be one of {ENERGY_TESTS}, got {energy_test!r}")
    return energy_test


def stripe_mask(x, rois: Sequence[Sequence[int]] | None = None, energy_test: str = "contrast") -> np.ndarray:
    """The stripe mask M of the original ``x`` (§13.4), or the union of the ``rois`` rectangles
    ``(top, left, bottom, right)`` when given (bool (H, W)). ``energy_test``: ``"contrast"`` (default,
    local standard deviation of Y′ ≥ 10) or ``"s13"`` (§13's E ≥ max(64, 70th percentile of E))."""
    _check_energy_test(energy_test)
    lum = luma(x)
    _check_size(lum.shape)
    if rois:
        return _roi_mask(lum.shape, rois)
    _, coh, energy = structure_tensor(lum)
    return _auto_mask(lum, coh, energy, energy_test)


def _auto_mask(lum, coh, energy, energy_test: str = "contrast") -> np.ndarray:
    from scipy.ndimage import binary_opening, label

    if _check_energy_test(energy_test) == "s13":
        strong = energy >= max(E_FLOOR, float(np.percentile(energy, E_PERCENTILE)))
    else:
        strong = local_contrast(lum) >= CONTRAST_MIN
    m = (coh >= C_MASK) & strong & _periodic_grid(lum)
    m = binary_opening(m, structure=np.ones((3, 3), bool))
    lab, n = label(m, structure=np.ones((3, 3), int))
    if n:
        sizes = np.bincount(lab.ravel())
        keep = sizes >= MIN_COMPONENT
        keep[0] = False
        m = keep[lab]
    m[:BORDER] = m[-BORDER:] = False
    m[:, :BORDER] = m[:, -BORDER:] = False
    return m


def orientation_histograms(theta: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """36-bin orientation histograms (…, 36) of θ (degrees, any range; mod 180°) over the last axis,
    weighted, linear votes onto bin centres 0°, 5°, …, 175° (circular), smoothed (1, 2, 1)/4 and
    normalised to sum 1 (uniform where the weights sum to 0)."""
    width = 180.0 / NBINS
    pos = np.mod(theta, 180.0) / width
    k0 = np.floor(pos)
    f = pos - k0
    k0 = k0.astype(int) % NBINS
    k1 = (k0 + 1) % NBINS
    lead = theta.shape[:-1]
    hist = np.zeros(lead + (NBINS,))
    flat = hist.reshape(-1, NBINS)
    rows = np.broadcast_to(np.arange(flat.shape[0]).reshape(lead + (1,)) if lead else 0, theta.shape).ravel()
    np.add.at(flat, (rows, k0.ravel()), (weight * (1.0 - f)).ravel())
    np.add.at(flat, (rows, k1.ravel()), (weight * f).ravel())
    hist = (np.roll(hist, 1, -1) + 2.0 * hist + np.roll(hist, -1, -1)) / 4.0
    tot = hist.sum(-1, keepdims=True)
    return np.where(tot > 0, hist / np.where(tot > 0, tot, 1.0), 1.0 / NBINS)


def _jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence, base 2, over the last axis (∈ [0, 1])."""
    m = 0.5 * (p + q)

    def kl(a):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
        return t.sum(-1)

    return np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0)


def _tiles(mask: np.ndarray):
    """Top-left corners of the 32×32 / stride-16 tiles with ≥ 50 % of their pixels in ``mask``."""
    h, w = mask.shape
    out = []
    for t in range(0, h - TILE + 1, TILE_STRIDE):
        for lft in range(0, w - TILE + 1, TILE_STRIDE):
            if mask[t:t + TILE, lft:lft + TILE].sum() >= TILE_MIN_FRAC * TILE * TILE:
                out.append((t, lft))
    return out


def _check_size(shape):
    if min(shape[:2]) < MIN_SIDE:
        raise ValueError(f"SOF needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {shape[0]}x{shape[1]}")


def original_fields(x, rois=None, energy_test: str = "contrast") -> dict:
    """The original's half of :func:`sof_maps` (luma, θ, coherence, energy and the stripe mask),
    computed once: pass it as ``original=`` to :func:`sof` / :func:`sof_maps` when one original is
    compared with many reconstructions (a study's codec points); the numbers are identical."""
    _check_energy_test(energy_test)
    xa = np.asarray(x)
    lx = luma(xa)
    _check_size(lx.shape)
    tx, cx, ex = structure_tensor(lx)
    mask = _roi_mask(lx.shape, rois) if rois else _auto_mask(lx, cx, ex, energy_test)
    return {"shape": xa.shape, "mask": mask, "theta_x": tx, "coh_x": cx, "energy_x": ex, "luma_x": lx}


def sof_maps(x, y, rois=None, energy_test: str = "contrast", original: dict | None = None) -> dict:
    """The per-pixel fields behind :func:`sof`: ``mask``, ``theta_x``, ``theta_y``, ``coh_x``,
    ``coh_y``, ``energy_x``, ``energy_y``, ``dtheta`` (wrap(θ_Y − θ_X), degrees), and the lumas.
    ``energy_test`` as in :func:`stripe_mask` (ignored with ``rois``). ``original``: the result of
    :func:`original_fields` for this ``x`` (and the same ``rois`` / ``energy_test``), to skip its recomputation."""
    o = original if original is not None else original_fields(x, rois, energy_test)
    ya = np.asarray(y)
    if ya.shape != tuple(o["shape"]):
        raise ValueError(f"SOF: reconstruction shape {ya.shape} differs from the original's {tuple(o['shape'])}")
    ly = luma(ya)
    ty, cy, ey = structure_tensor(ly)
    return {"mask": o["mask"], "theta_x": o["theta_x"], "theta_y": ty, "coh_x": o["coh_x"], "coh_y": cy,
            "energy_x": o["energy_x"], "energy_y": ey, "dtheta": wrap_deg(ty - o["theta_x"]), "luma_x": o["luma_x"],
            "luma_y": ly}


def _summary(f: dict, spectral: bool) -> dict:
    mask = f["mask"]
    out = {"mask_px": int(mask.sum()), "mask_frac": float(mask.mean()), "rois": None}
    if not mask.any():
        out.update({k: None for k in FIELDS if spectral or not k.startswith("spectral")})
        out["note"] = "empty stripe mask: the original has no oriented periodic texture that passes the mask's tests"
        return out
    w = (f["coh_x"] * f["energy_x"])[mask]
    wsum = w.sum()
    ad = np.abs(f["dtheta"][mask])
    cy, cx = f["coh_y"][mask], f["coh_x"][mask]
    out["maoe"] = float(np.sum(w * ad) / wsum)
    out["flip_rate"] = float(np.sum(w * ((ad > FLIP_DEG) & (cy >= FLIP_C))) / wsum)
    out["washout_rate"] = float(np.sum(w * (cy < WASH_C)) / wsum)
    out["coherence_ratio"] = float(np.sum(w * (cy / cx)) / wsum)
    tiles = _tiles(mask)
    out["ohd_tiles"] = len(tiles)
    if tiles:
        sl = [(slice(t, t + TILE), slice(lft, lft + TILE)) for t, lft in tiles]
        mk = np.stack([mask[s] for s in sl]).reshape(len(tiles), -1)
        hx = orientation_histograms(np.stack([f["theta_x"][s] for s in sl]).reshape(len(tiles), -1),
                                    np.stack([f["energy_x"][s] for s in sl]).reshape(len(tiles), -1) * mk)
        hy = orientation_histograms(np.stack([f["theta_y"][s] for s in sl]).reshape(len(tiles), -1),
                                    np.stack([f["energy_y"][s] for s in sl]).reshape(len(tiles), -1) * mk)
        j = _jsd(hx, hy)
        out["ohd_mean"] = float(j.mean())
        out["ohd_p95"] = float(np.percentile(j, 95))
    else:
        out["ohd_mean"] = out["ohd_p95"] = None
    if spectral:
        if tiles:
            _, _, ux, vx = _peaks(np.stack([f["luma_x"][s] for s in sl]))
            py, _, uy, vy = _peaks(np.stack([f["luma_y"][s] for s in sl]))
            ang = np.abs(wrap_deg(np.degrees(np.arctan2(uy, vy) - np.arctan2(ux, vx))))
            rx, ry = np.hypot(ux, vx), np.hypot(uy, vy)
            flat = py <= 0
            ang = np.where(flat, 90.0, ang)
            rad = np.where(flat, 1.0, np.abs(ry - rx) / rx)
            out["spectral_angle_err"] = float(ang.mean())
            out["spectral_radius_err"] = float(rad.mean())
        else:
            out["spectral_angle_err"] = out["spectral_radius_err"] = None
    return out


def sof(x, y, rois=None, spectral: bool = True, energy_test: str = "contrast", original: dict | None = None) -> dict:
    """Stripe-orientation fidelity of reconstruction ``y`` against original ``x`` (§13; see the module
    docstring): a JSON-able dict with ``mask_px``, ``mask_frac``, ``rois``, ``maoe`` (degrees),
    ``flip_rate``, ``washout_rate``, ``coherence_ratio``, ``ohd_mean``, ``ohd_p95``, ``ohd_tiles`` and,
    with ``spectral``, ``spectral_angle_err`` (degrees) / ``spectral_radius_err``. An empty mask gives
    ``mask_px = 0``, the numbers ``None`` and a ``note``. ``energy_test``: the mask's strength test,
    ``"contrast"`` (default) or §13's ``"s13"`` (see :func:`stripe_mask`). ``original``: see
    :func:`original_fields`."""
    f = sof_maps(x, y, rois, energy_test, original)
    out = _summary(f, spectral)
    if rois:
        out["rois"] = [list(map(int, r)) for r in rois]
    return out


def write_overlay(x, y, path, rois=None, title: str | None = None, energy_test: str = "contrast") -> str:
    """PNG of |Δθ| (0–90°, colour) on the stripe mask over the original's grey luma; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = sof_maps(x, y, rois, energy_test)
    h, w = f["mask"].shape
    fig, ax = plt.subplots(figsize=(max(3.0, w / 100) + 1.2, max(3.0, h / 100)), dpi=100)
    ax.imshow(f["luma_x"], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    im = ax.imshow(np.ma.masked_where(~f["mask"], np.abs(f["dtheta"])), cmap="turbo", vmin=0, vmax=90,
                   interpolation="nearest", alpha=0.85)
    fig.colorbar(im, ax=ax, label="|Δθ| (degrees)")
    s = _summary(f, spectral=False)
    ax.set_title(title or (f"MAOE {s['maoe']:.1f}°, flip {s['flip_rate']:.3f}, washout {s['washout_rate']:.3f}"
                           if s["mask_px"] else "empty stripe mask"), fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def sof_row(x, y, rois=None, prefix: str = "sof-", energy_test: str = "contrast") -> dict:
    """:func:`sof` flattened for a per-image result row: keys ``sof-mask-px``, ``sof-maoe``, … (``_`` → ``-``)."""
    d = sof(x, y, rois, energy_test=energy_test)
    return {prefix + k.replace("_", "-"): v for k, v in d.items() if k not in ("rois", "note")}

