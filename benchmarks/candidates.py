"""Candidate feature groups for benchmarks/feature_lab.py: each takes (3, h, w) float32 planes, returns floats."""

from __future__ import annotations

import numpy as np

from service.features import builtin as B

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luma_of(p):
    return LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2]


def blocks(a, bs=16):
    h, w = a.shape
    bh, bw = max(h // bs, 1), max(w // bs, 1)
    sh, sw = h // bh, w // bw
    return a[: bh * sh, : bw * sw].reshape(bh, sh, bw, sw)


def q(v, qs):
    return B._quantiles(v, qs)


# ------------------------------------------------------------------ spectrum
_EDGES = np.geomspace(0.015, 0.5, 11)


def spectrum(p):
    y = luma_of(p)
    h, w = y.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    f = np.fft.rfft2((y - y.mean()) * win)
    pw = (f.real**2 + f.imag**2)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    r = np.sqrt(fx**2 + fy**2)
    ang = np.abs(np.arctan2(fy, fx + 1e-12))  # 0..pi (rfft: fx >= 0)
    idx = np.digitize(r, _EDGES) - 1
    ok = (idx >= 0) & (idx < len(_EDGES) - 1)
    tot = np.bincount(idx[ok], weights=pw[ok], minlength=10)
    cnt = np.bincount(idx[ok], minlength=10)
    good = cnt > 0
    mids = np.sqrt(_EDGES[:-1] * _EDGES[1:])
    lx = np.log(mids[good])
    ly = np.log(tot[good] / cnt[good] + 1e-6)
    if good.sum() < 4:
        return [0.0] * 8
    slope, icpt = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + icpt)
    curv = np.polyfit(lx, ly, 2)[0]
    lo = good & (mids < 0.08)
    hi = good & (mids >= 0.08)
    s_lo = np.polyfit(np.log(mids[lo]), np.log(tot[lo] / cnt[lo] + 1e-6), 1)[0] if lo.sum() >= 2 else slope
    s_hi = np.polyfit(np.log(mids[hi]), np.log(tot[hi] / cnt[hi] + 1e-6), 1)[0] if hi.sum() >= 2 else slope
    mid = (r > 0.05) & (r < 0.35)
    hv = mid & ((ang < np.pi / 18) | (np.abs(ang - np.pi / 2) < np.pi / 18) | (ang > np.pi * 17 / 18))
    diag = mid & ((np.abs(ang - np.pi / 4) < np.pi / 18) | (np.abs(ang - 3 * np.pi / 4) < np.pi / 18))
    aniso = np.log((pw[hv].mean() + 1e-6) / (pw[diag].mean() + 1e-6)) if hv.any() and diag.any() else 0.0
    hf = pw[r > 0.25].sum() / (pw[r > 0.02].sum() + 1e-6)
    return [slope / 4, s_lo / 4, s_hi / 4, curv, float(np.abs(resid).max()), float(aniso), float(np.log(hf + 1e-9)),
            float(np.log(pw[mid].std() / (pw[mid].mean() + 1e-9) + 1e-9))]


# ------------------------------------------------------------------ sharpness variation
def sharpness(p):
    y = luma_of(p)
    lap = np.abs(B._laplacian(y))
    sd = blocks(y).std(axis=(1, 3)).ravel()
    lm = blocks(lap).mean(axis=(1, 3)).ravel()
    busy = sd > 4
    if busy.sum() < 4:
        return [0.0] * 7
    s = np.log((lm[busy] + 0.1) / sd[busy])
    q10, q50, q90 = q(s, (0.1, 0.5, 0.9))
    # half scale sharpness ratio
    yh = B._half(y)
    lap2 = np.abs(B._laplacian(yh)).mean()
    return [q10, q50, q90, q90 - q10, float(s.std()), float(busy.mean()), float(np.log((lap.mean() + .1) / (lap2 + .1)))]


# ------------------------------------------------------------------ chroma vs luma in shading
def chroma_shading(p):
    r, g, b = p
    s = r + g + b + 1.0
    cr, cg = r / s, g / s
    y = luma_of(p)
    ly = np.log(y + 4)
    sdl = blocks(ly).std(axis=(1, 3)).ravel()
    sdc = np.hypot(blocks(cr).std(axis=(1, 3)), blocks(cg).std(axis=(1, 3))).ravel()
    rg, yb = r - g, 0.5 * (r + g) - b
    sdo = np.hypot(blocks(rg).std(axis=(1, 3)), blocks(yb).std(axis=(1, 3))).ravel()
    sdy = blocks(y).std(axis=(1, 3)).ravel()
    busy = sdy > 4
    if busy.sum() < 4:
        return [0.0] * 6
    ratio = np.log((sdc[busy] + 1e-3) / (sdl[busy] + 1e-3))
    ratio2 = np.log((sdo[busy] + 0.5) / (sdy[busy] + 0.5))
    return [*q(ratio, (0.25, 0.5, 0.75)), *q(ratio2, (0.25, 0.5, 0.75))]


# ------------------------------------------------------------------ orientation
def orientation(p):
    y = luma_of(p)
    gx = y[1:-1, 2:] - y[1:-1, :-2]
    gy = y[2:, 1:-1] - y[:-2, 1:-1]
    mag = np.hypot(gx, gy)
    keep = mag > 8
    if keep.sum() < 32:
        return [0.0, 0.0, 0.0, 0.0]
    ang = np.arctan2(gy[keep], gx[keep]) % np.pi
    bins = (ang / np.pi * 18).astype(int) % 18
    hist = np.bincount(bins, weights=mag[keep], minlength=18)
    pr = hist / hist.sum()
    nz = pr[pr > 0]
    ent = -(nz * np.log(nz)).sum() / np.log(18)
    hv = pr[0] + pr[17] + pr[8] + pr[9]
    # orientation coherence (structure tensor) in 16px blocks
    jxx, jyy, jxy = blocks(gx * gx), blocks(gy * gy), blocks(gx * gy)
    a, c, bb = jxx.sum(axis=(1, 3)), jyy.sum(axis=(1, 3)), jxy.sum(axis=(1, 3))
    coh = np.sqrt((a - c) ** 2 + 4 * bb**2) / (a + c + 1e-6)
    act = (a + c) > 16 * 16 * 64
    return [float(ent), float(hv), float(np.sort(pr)[-1]), float(coh[act].mean()) if act.any() else 0.0]


# ------------------------------------------------------------------ joint hue-saturation histogram
def huesat(p):
    r, g, b = p
    vmax = np.maximum(np.maximum(r, g), b)
    vmin = np.minimum(np.minimum(r, g), b)
    c = vmax - vmin
    sat = c / (vmax + 1e-3)
    col = c > 12
    if col.sum() < 16:
        out = np.zeros(24)
        return [*out, 0.0]
    rr, gg, bb, cc = r[col], g[col], b[col], c[col]
    vm = vmax[col]
    h = np.where(vm == rr, (gg - bb) / cc, np.where(vm == gg, 2.0 + (bb - rr) / cc, 4.0 + (rr - gg) / cc))
    hb = (np.floor((h + 0.5) * 8 / 6).astype(int)) % 8
    sb = np.digitize(sat[col], (0.3, 0.6))
    hist = np.bincount(hb * 3 + sb, minlength=24) / r.size
    nz = hist[hist > 0] / hist.sum()
    return [*hist, float(-(nz * np.log(nz)).sum() / np.log(24))]


# ------------------------------------------------------------------ uniform LBP at two radii
def _lbp_riu2(a, rad, tol=1.0):
    h, w = a.shape
    if h <= 2 * rad or w <= 2 * rad:
        return [0.0] * 10
    centre = a[rad:h - rad, rad:w - rad] + tol
    ring = [(0, 0), (0, rad), (0, 2 * rad), (rad, 2 * rad), (2 * rad, 2 * rad), (2 * rad, rad), (2 * rad, 0), (rad, 0)]
    bits = [a[i:h - 2 * rad + i, j:w - 2 * rad + j] > centre for i, j in ring]
    trans = sum((bits[k] != bits[(k + 1) % 8]).astype(np.uint8) for k in range(8))
    ones = sum(bb.astype(np.uint8) for bb in bits)
    code = np.where(trans <= 2, ones, 9)
    return list(np.bincount(code.ravel(), minlength=10) / code.size)


def lbp(p):
    y = luma_of(p)
    return [*_lbp_riu2(y, 1), *_lbp_riu2(y, 2), *_lbp_riu2(B._half(y), 1)]


# ------------------------------------------------------------------ dark channel
def dark(p):
    m = np.minimum(np.minimum(p[0], p[1]), p[2])
    d = B._min3(B._min3(B._min3(m)))
    mx = np.maximum(np.maximum(p[0], p[1]), p[2])
    return [float(d.mean() / 255), *(v / 255 for v in q(d, (0.1, 0.5, 0.9))), float((d < 25).mean()),
            float(((mx - m) / (mx + 1))[d > 150].mean()) if (d > 150).any() else 0.0]


# ------------------------------------------------------------------ wavelet noise and band-pass kurtosis
def _haar(a):
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    x00, x01, x10, x11 = a[0::2, 0::2], a[0::2, 1::2], a[1::2, 0::2], a[1::2, 1::2]
    ll = (x00 + x01 + x10 + x11) / 4
    hh = (x00 - x01 - x10 + x11) / 2
    hl = (x00 - x01 + x10 - x11) / 2
    lh = (x00 + x01 - x10 - x11) / 2
    return ll, hh, hl, lh


def _kurt(v):
    v = v.ravel()
    s2 = v.var()
    return float(np.log(((v - v.mean()) ** 4).mean() / (s2 * s2 + 1e-9) + 1e-3)) if s2 > 1e-6 else 0.0


def wavelet(p):
    y = luma_of(p)
    out = []
    a = y
    for lvl in range(3):
        if min(a.shape) < 4:
            out += [0.0, 0.0, 0.0]
            continue
        a, hh, hl, lh = _haar(a)
        sig = np.median(np.abs(hh)) / 0.6745
        out += [float(np.log1p(sig)), _kurt(np.concatenate([hl.ravel(), lh.ravel()])),
                float(np.log((np.abs(hh).mean() + .1) / (0.5 * (np.abs(hl).mean() + np.abs(lh).mean()) + .1)))]
    # chroma HH noise
    c = p[0] - p[1]
    _, hhc, _, _ = _haar(c) if min(c.shape) >= 2 else (None, np.zeros(1), None, None)
    out.append(float(np.log1p(np.median(np.abs(hhc)) / 0.6745)))
    return out


GROUPS = {
    "spectrum": spectrum,
    "sharpness": sharpness,
    "chroma_shading": chroma_shading,
    "orientation": orientation,
    "huesat": huesat,
    "lbp": lbp,
    "dark": dark,
    "wavelet": wavelet,
}


def lbp_r2(p):
    y = luma_of(p)
    return [*_lbp_riu2(y, 2), *_lbp_riu2(B._half(y), 1)]


def lbp_r1(p):
    return _lbp_riu2(luma_of(p), 1)


GROUPS["lbp_r2"] = lbp_r2
GROUPS["lbp_r1"] = lbp_r1
