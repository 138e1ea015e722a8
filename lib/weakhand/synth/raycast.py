"""Compiled (numba) ray caster for capsule hands: z-buffer, part labels, normals, shading.

Design: per image, per capsule, only the pixels inside the capsule's conservative screen-space
bounding box are visited; a cheap 2-D distance test against the projected axis rejects most of
them before the exact 3-D ray–capsule intersection. Images of a batch run in parallel
(`prange`). A dense all-pixels × all-capsules cast is ~1000× slower on 2 cores.

Camera: pinhole, OpenCV convention, pixel centres at integer coordinates; depth is the
z-coordinate (mm), not the ray length.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

FAR = np.float32(1e9)


@njit(cache=True, inline="always")
def _ray_capsule(dx, dy, dz, ax, ay, az, bx, by, bz, r):
    """Nearest positive hit of the unit ray (0 → d) with capsule [a, b] radius r.

    Returns (t, nx, ny, nz); t < 0 means no hit. Derivation: points at distance r from the
    infinite axis give A t² + 2 B t + C = 0 (scaled by |b-a|²); a hit outside the segment's
    span falls through to the end sphere on that side.
    """
    bax, bay, baz = bx - ax, by - ay, bz - az
    oax, oay, oaz = -ax, -ay, -az
    baba = bax * bax + bay * bay + baz * baz
    rr = r * r
    if baba > 1e-12:
        bard = bax * dx + bay * dy + baz * dz
        baoa = bax * oax + bay * oay + baz * oaz
        rdoa = dx * oax + dy * oay + dz * oaz
        oaoa = oax * oax + oay * oay + oaz * oaz
        A = baba - bard * bard
        B = baba * rdoa - baoa * bard
        C = baba * oaoa - baoa * baoa - rr * baba
        h = B * B - A * C
        if h < 0.0:
            return -1.0, 0.0, 0.0, 0.0
        if A > 1e-12:
            t = (-B - np.sqrt(h)) / A
            y = baoa + t * bard
            if 0.0 < y < baba and t > 0.0:
                k = y / baba
                nx = t * dx - ax - bax * k
                ny = t * dy - ay - bay * k
                nz = t * dz - az - baz * k
                return t, nx / r, ny / r, nz / r
            if y <= 0.0:
                cx, cy, cz = ax, ay, az
            else:
                cx, cy, cz = bx, by, bz
        else:  # ray parallel to the axis: only the near end sphere can be hit first
            if bard > 0.0:
                cx, cy, cz = ax, ay, az
            else:
                cx, cy, cz = bx, by, bz
    else:
        cx, cy, cz = ax, ay, az
    # sphere at c: |t d - c|^2 = r^2
    b2 = -(dx * cx + dy * cy + dz * cz)
    c2 = cx * cx + cy * cy + cz * cz - rr
    h2 = b2 * b2 - c2
    if h2 <= 0.0:
        return -1.0, 0.0, 0.0, 0.0
    t = -b2 - np.sqrt(h2)
    if t <= 0.0:
        return -1.0, 0.0, 0.0, 0.0
    return t, (t * dx - cx) / r, (t * dy - cy) / r, (t * dz - cz) / r


@njit(cache=True, parallel=True, fastmath=True)
def cast_capsules(caps, caps_part, ncaps, cam, depth, part, normal):
    """Ray-cast B images.

    caps: (B,P,7) float32 rows (ax, ay, az, bx, by, bz, radius) in mm, camera frame.
    caps_part: (B,P) uint8 label per capsule; ncaps: (B,) int32 capsules used per image.
    cam: (B,4) float64 (fx, fy, cx, cy). Outputs (filled): depth (B,H,W) float32 (0 = no
    hit), part (B,H,W) uint8, normal (B,H,W,3) float32 (unit, camera frame).
    """
    B, H, W = depth.shape
    for i in prange(B):
        fx, fy, cx, cy = cam[i, 0], cam[i, 1], cam[i, 2], cam[i, 3]
        ifx, ify = 1.0 / fx, 1.0 / fy
        f = max(fx, fy)
        zb = depth[i]
        zb[:] = FAR
        part[i, :, :] = 0
        # front-to-back order lets the per-pixel depth test skip hidden capsules early
        nc = ncaps[i]
        zmins = np.empty(nc)
        for p in range(nc):
            zmins[p] = min(caps[i, p, 2], caps[i, p, 5]) - caps[i, p, 6]
        order = np.argsort(zmins)
        for q in range(nc):
            p = order[q]
            ax, ay, az = caps[i, p, 0], caps[i, p, 1], caps[i, p, 2]
            bx, by, bz = caps[i, p, 3], caps[i, p, 4], caps[i, p, 5]
            r = caps[i, p, 6]
            zmin = min(az, bz) - r
            if zmin <= 1.0:
                continue  # behind or through the camera: never placed there by the generator
            ua, va = fx * ax / az + cx, fy * ay / az + cy
            ub, vb = fx * bx / bz + cx, fy * by / bz + cy
            # off-axis perspective stretches discs radially by up to 1 + tan^2(angle)
            tx = max(abs(ua - cx), abs(ub - cx)) / fx
            ty = max(abs(va - cy), abs(vb - cy)) / fy
            rpx = f * r / zmin * 1.05 * (1.0 + tx * tx + ty * ty) + 1.0
            u0 = max(int(np.floor(min(ua, ub) - rpx)), 0)
            u1 = min(int(np.ceil(max(ua, ub) + rpx)), W - 1)
            v0 = max(int(np.floor(min(va, vb) - rpx)), 0)
            v1 = min(int(np.ceil(max(va, vb) + rpx)), H - 1)
            if u0 > u1 or v0 > v1:
                continue
            sx, sy = ub - ua, vb - va
            ss = sx * sx + sy * sy
            iss = 1.0 / ss if ss > 1e-9 else 0.0
            rpx2 = rpx * rpx
            lab = caps_part[i, p]
            for v in range(v0, v1 + 1):
                yv = (v - cy) * ify
                for u in range(u0, u1 + 1):
                    if zb[v, u] <= zmin:
                        continue  # something nearer than this whole capsule is already there
                    # 2-D reject: pixel far from the projected axis segment
                    px, py = u - ua, v - va
                    tt = min(max((px * sx + py * sy) * iss, 0.0), 1.0)
                    ex, ey = px - tt * sx, py - tt * sy
                    if ex * ex + ey * ey > rpx2:
                        continue
                    xu = (u - cx) * ifx
                    inv = 1.0 / np.sqrt(xu * xu + yv * yv + 1.0)
                    dx, dy, dz = xu * inv, yv * inv, inv
                    t, nx, ny, nz = _ray_capsule(dx, dy, dz, ax, ay, az, bx, by, bz, r)
                    if t > 0.0:
                        z = t * dz
                        if z < zb[v, u]:
                            zb[v, u] = z
                            part[i, v, u] = lab
                            normal[i, v, u, 0] = nx
                            normal[i, v, u, 1] = ny
                            normal[i, v, u, 2] = nz
        for v in range(H):
            for u in range(W):
                if zb[v, u] >= FAR:
                    zb[v, u] = 0.0


@njit(cache=True, inline="always")
def _hash_int(a, b, c, s):
    """Integer hash of a lattice point → int in [0, 2**32)."""
    h = (a * 73856093) ^ (b * 19349663) ^ (c * 83492791) ^ s
    h &= 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return h ^ (h >> 16)


@njit(cache=True, inline="always")
def _hash(a, b, c, s):
    """Integer hash of a lattice point → float in [0, 1)."""
    return _hash_int(a, b, c, s) * (1.0 / 4294967296.0)


@njit(cache=True, parallel=True, fastmath=True)
def shade(depth, part, normal, cam, palette, light, bg_colors, clutter, nclutter, bg_plane,
          seeds, rgb):
    """Shade hits and paint the background; completes `depth` with the background plane.

    palette: (B,NP,3) float32 albedo per part label. light: (B,10) float32 rows
    (lx, ly, lz, ambient, diffuse, specular, shininess, wrap, texture amplitude, texture cell mm),
    l pointing from the surface towards the light (camera frame, unit).
    bg_colors: (B,3,3) gradient start, end colour and (dir_x, dir_y, pixel-noise amplitude).
    clutter: (B,S,10) rows (kind 0 rect / 1 ellipse / 2 stripe, cu, cv, half-a, half-b,
    cos, sin, r, g, b) in pixels; nclutter (B,). bg_plane: (B,4) plane n·X = d (n unit, d mm),
    d <= 0 → no background depth. seeds: (B,) int64. rgb: (B,H,W,3) float32 output in [0,1].
    """
    B, H, W = depth.shape
    for i in prange(B):
        fx, fy, cx, cy = cam[i, 0], cam[i, 1], cam[i, 2], cam[i, 3]
        lx, ly, lz = light[i, 0], light[i, 1], light[i, 2]
        amb, kd, ks, shin, wrap = light[i, 3], light[i, 4], light[i, 5], light[i, 6], light[i, 7]
        tex_amp, tex_cell = light[i, 8], light[i, 9]
        seed = seeds[i]
        gdx, gdy, gnoise = bg_colors[i, 2, 0], bg_colors[i, 2, 1], bg_colors[i, 2, 2]
        pnx, pny, pnz, pd = bg_plane[i, 0], bg_plane[i, 1], bg_plane[i, 2], bg_plane[i, 3]
        ifx, ify, iW, iH = 1.0 / fx, 1.0 / fy, 1.0 / W, 1.0 / H
        for v in range(H):
            yv = (v - cy) * ify
            for u in range(W):
                xu = (u - cx) * ifx
                lab = part[i, v, u]
                if lab != 0:
                    z = depth[i, v, u]
                    inv = 1.0 / np.sqrt(xu * xu + yv * yv + 1.0)
                    vx, vy, vz = -xu * inv, -yv * inv, -inv  # towards the camera
                    nx, ny, nz = normal[i, v, u, 0], normal[i, v, u, 1], normal[i, v, u, 2]
                    ndl = nx * lx + ny * ly + nz * lz
                    diff = max((ndl + wrap) / (1.0 + wrap), 0.0)
                    hx, hy, hz = lx + vx, ly + vy, lz + vz
                    hn = np.sqrt(hx * hx + hy * hy + hz * hz) + 1e-9
                    ndh = max((nx * hx + ny * hy + nz * hz) / hn, 0.0)
                    # Schlick's rational form of ndh**shin (no pow per pixel)
                    spec = ks * ndh / (shin - shin * ndh + ndh + 1e-9) if ndl > 0.0 else 0.0
                    # skin mottling: cell noise on the 3-D surface point (cells of ~1-3 mm are
                    # about a pixel at these crop scales, so interpolation would be wasted)
                    tex = 1.0 + tex_amp * (_hash(int(xu * z / tex_cell), int(yv * z / tex_cell),
                                                 int(z / tex_cell), seed) - 0.5)
                    shade_k = (amb + kd * diff) * tex
                    for c in range(3):
                        rgb[i, v, u, c] = palette[i, lab, c] * shade_k + spec
                else:  # background gradient; depth from the background plane
                    g = (u * iW - 0.5) * gdx + (v * iH - 0.5) * gdy + 0.5
                    g = min(max(g, 0.0), 1.0)
                    for c in range(3):
                        rgb[i, v, u, c] = bg_colors[i, 0, c] + g * (bg_colors[i, 1, c]
                                                                     - bg_colors[i, 0, c])
                    den = pnx * xu + pny * yv + pnz
                    depth[i, v, u] = pd / den if (pd > 0.0 and den > 1e-6) else 0.0
        # clutter shapes, painted in order over the background, each only inside its box
        for s in range(nclutter[i]):
            kind, cu, cv = clutter[i, s, 0], clutter[i, s, 1], clutter[i, s, 2]
            ha = clutter[i, s, 3] if kind < 1.5 else 2.0 * (H + W)  # stripes: long bars
            hb, cs, sn = clutter[i, s, 4], clutter[i, s, 5], clutter[i, s, 6]
            ext_u = abs(ha * cs) + abs(hb * sn)
            ext_v = abs(ha * sn) + abs(hb * cs)
            inv_a, inv_b = 1.0 / ha, 1.0 / hb
            for v in range(max(int(cv - ext_v), 0), min(int(cv + ext_v) + 2, H)):
                for u in range(max(int(cu - ext_u), 0), min(int(cu + ext_u) + 2, W)):
                    if part[i, v, u] != 0:
                        continue
                    du, dv = u - cu, v - cv
                    qa = (du * cs + dv * sn) * inv_a
                    qb = (-du * sn + dv * cs) * inv_b
                    if kind < 0.5 or kind >= 1.5:
                        inside = abs(qa) <= 1.0 and abs(qb) <= 1.0
                    else:
                        inside = qa * qa + qb * qb <= 1.0
                    if inside:
                        sh = 0.85 + 0.15 * qa if kind < 1.5 else 1.0
                        for c in range(3):
                            rgb[i, v, u, c] = clutter[i, s, 7 + c] * sh
        if gnoise > 0.0:  # sensor-like pixel noise on the background
            for v in range(H):
                for u in range(W):
                    if part[i, v, u] == 0:
                        nz_ = gnoise * (_hash(u, v, 0, seed) - 0.5)
                        for c in range(3):
                            rgb[i, v, u, c] += nz_
