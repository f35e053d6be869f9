#!/usr/bin/env python3
"""Lane-level NumPy emulation of the CUDA Self-Extend kernels (ggml-cuda/fattn-se.cu, patch 0003) vs float64.

No GPU needed: the mma kernel's fragment layouts (mma.sync m16n8k16, ldmatrix .x4 / .x4.trans, as the
PTX ISA documents them), its row/lane mapping, tile classification, K-tile re-rotation with the
per-key complex-multiplication recurrence, online softmax and KV splits, and the vec kernel's lane
layout (NORM and NEOX pairs in one lane), are replayed on small random cases and compared with a
direct float64 Self-Extend attention. Used to check index math before spending GPU time:

    python bench/cuda_se_emulate.py        # mma kernel cases, then vec kernel cases

It mirrors the kernels' logic, not their speed (minutes-long runs would need the real GPU).
"""
import numpy as np, math, sys

f16 = np.float16
f32 = np.float32

def floordiv(a, b):
    return a // b  # python floor division

def theta_of(d, n_dims, base, fscale):
    if 2*d >= n_dims: return 0.0
    return fscale * base ** (-2.0*d/n_dims)

def cos_sin(delta, th):
    a = delta*th
    k = round(a/(2*math.pi))
    r = np.float32(a - k*2*math.pi)
    return (f32(math.cos(r)), f32(math.sin(r)))

def step(cs, e1):
    return (f32(cs[0]*e1[0] + cs[1]*e1[1]), f32(cs[1]*e1[0] - cs[0]*e1[1]))

# ---------------- reference (float64): q,k stored rotated at true positions ----------------
def rot_vec(x, delta, n_dims, neox, base, fscale):
    y = x.astype(np.float64).copy()
    h = n_dims//2
    for d in range(h):
        th = theta_of(d, n_dims, base, fscale)
        c, s = math.cos(delta*th), math.sin(delta*th)
        i0, i1 = (d, d+h) if neox else (2*d, 2*d+1)
        a, b = y[i0], y[i1]
        y[i0] = a*c - b*s; y[i1] = a*s + b*c
    return y

def reference(Q, K, V, Msk, PQ, PK, G, W, pos_min, n_dims, neox, base, fscale, scale, softcap):
    ne3, n_head, n_q, D = Q.shape
    n_kvh, n_kv = K.shape[1], K.shape[2]
    gqa = n_head//n_kvh
    out = np.zeros((ne3, n_q, n_head, D))
    for s in range(ne3):
        for h in range(n_head):
            kh = h//gqa
            Kf = K[s, kh].astype(np.float64); Vf = V[s, kh].astype(np.float64)
            Kg = np.stack([rot_vec(Kf[j], floordiv(PK[s,j], G) - PK[s,j], n_dims, neox, base, fscale) for j in range(n_kv)])
            for t in range(n_q):
                p = PQ[s, t]
                q = Q[s, h, t].astype(np.float64)
                qg = rot_vec(q, floordiv(p, G) + W - W//G - p, n_dims, neox, base, fscale)
                sn = Kf @ q; sg = Kg @ qg
                grp = (p >= pos_min) & (p - PK[s] >= W)
                sc = np.where(grp, sg, sn)*scale
                if softcap: sc = softcap*np.tanh(sc/softcap)
                sc = sc + Msk[s % Msk.shape[0], t].astype(np.float64)
                m = sc.max()
                if m == -np.inf: continue
                e = np.exp(sc - m)
                out[s, t, h] = e @ Vf / e.sum()
    return out

# ---------------- mma kernel emulation ----------------
def mma(C, A, b0, b1):
    """C: [4,32] f32; A: [4,32,2] f16; b0,b1: [32,2] f16"""
    Am = np.zeros((16, 16)); Bm = np.zeros((16, 8))
    for t in range(32):
        g, q = t >> 2, t & 3
        Am[g, 2*q:2*q+2] = A[0][t]; Am[g+8, 2*q:2*q+2] = A[1][t]
        Am[g, 2*q+8:2*q+10] = A[2][t]; Am[g+8, 2*q+8:2*q+10] = A[3][t]
        Bm[2*q:2*q+2, g] = b0[t]; Bm[2*q+8:2*q+10, g] = b1[t]
    Dm = Am @ Bm
    for t in range(32):
        g, q = t >> 2, t & 3
        C[0][t] += Dm[g, 2*q]; C[1][t] += Dm[g, 2*q+1]; C[2][t] += Dm[g+8, 2*q]; C[3][t] += Dm[g+8, 2*q+1]

def ldmatrix_x4(smem, addr, trans=False):
    """addr: [32] element offsets of 8-element rows; returns [4,32,2] f16"""
    out = np.zeros((4, 32, 2), dtype=f16)
    for m in range(4):
        mat = np.stack([smem[addr[8*m + r]: addr[8*m + r] + 8] for r in range(8)])
        for t in range(32):
            if trans:
                out[m, t] = (mat[2*(t % 4), t//4], mat[2*(t % 4)+1, t//4])
            else:
                out[m, t] = (mat[t//4, 2*(t % 4)], mat[t//4, 2*(t % 4)+1])
    return out

def emulate_mma(Q, K, V, Msk, PQ, PK, G, W, pos_min, n_dims, neox, base, fscale, scale, softcap, nsplit_req=1):
    ne3, n_head, n_q, D = Q.shape
    n_kvh, n_kv = K.shape[1], K.shape[2]
    gqa = n_head//n_kvh
    NW, KV, ST = 4, 64, D + 8
    R, NT, NKC, NDT = 16*NW, NW*32, D//16, D//8
    ng = 1
    while ng < 8 and gqa % (2*ng) == 0: ng *= 2
    nq = R//ng; ntq = (n_q + nq - 1)//nq
    kv_per_split = -(-n_kv//nsplit_req); kv_per_split = -(-kv_per_split//KV)*KV
    nsplit = -(-n_kv//kv_per_split)
    dst = np.full((ne3, n_q, n_head, D), np.nan)
    parts = np.full((ne3, n_q, n_head, nsplit, D), np.nan); meta = np.zeros((ne3, n_q, n_head, nsplit, 2))
    lanes = np.arange(32); gid = lanes >> 2; tig = lanes & 3
    inv_G = f32(1.0)/f32(G)
    for bz in range(ne3*nsplit):
        seq, split = bz // nsplit, bz % nsplit
        for by in range(n_kvh*(gqa//ng)):
            ngroup = gqa//ng; kvh = by//ngroup; hbase = kvh*gqa + (by % ngroup)*ng
            for bx in range(ntq):
                t0 = bx*nq
                # per warp registers
                W_ = []
                qgmax = None
                for w in range(NW):
                    st = {}
                    rt = np.zeros((2, 32), int); rh = np.zeros((2, 32), int); rp = np.zeros((2, 32), int)
                    rv = np.zeros((2, 32), bool); rg = np.zeros((2, 32), bool)
                    for i in range(2):
                        r = 16*w + gid + 8*i
                        rt[i] = t0 + r//ng; rh[i] = hbase + r % ng; rv[i] = rt[i] < n_q
                        rp[i] = np.where(rv[i], PQ[seq, np.minimum(rt[i], n_q-1)], 0)
                        rg[i] = rv[i] & (rp[i] >= pos_min)
                    for i in range(2):
                        for l in range(32):
                            if rg[i][l] and tig[l] == 0:
                                qgmax = rp[i][l] if qgmax is None else max(qgmax, rp[i][l])
                    # Q fragments
                    qf = np.zeros((2, 32, 4*NKC), dtype=f32)
                    for i in range(2):
                        for l in range(32):
                            if rv[i][l]:
                                row = Q[seq, rh[i][l], rt[i][l]]
                                for kc in range(NKC):
                                    e0 = 16*kc + 2*tig[l]
                                    qf[i, l, 4*kc:4*kc+4] = np.array([row[e0], row[e0+1], row[e0+8], row[e0+9]], dtype=f32)*f32(scale)
                    def pack(qf):
                        A = np.zeros((NKC, 4, 32, 2), dtype=f16)
                        for kc in range(NKC):
                            A[kc, 0] = qf[0, :, 4*kc:4*kc+2].astype(f16); A[kc, 1] = qf[1, :, 4*kc:4*kc+2].astype(f16)
                            A[kc, 2] = qf[0, :, 4*kc+2:4*kc+4].astype(f16); A[kc, 3] = qf[1, :, 4*kc+2:4*kc+4].astype(f16)
                        return A
                    Qn = pack(qf)
                    dq = np.where(rg, np.floor_divide(rp, G) + W - W//G - rp, 0)
                    qf2 = qf.copy()
                    for l in range(32):
                        if neox:
                            for kc in range(NKC//2):
                                for j in range(4):
                                    th = theta_of(16*kc + 2*tig[l] + (j & 1) + 8*(j >> 1), n_dims, base, fscale)
                                    for i in range(2):
                                        if rg[i][l]:
                                            c, s = cos_sin(dq[i][l], th)
                                            x0, x1 = qf2[i, l, 4*kc+j], qf2[i, l, 4*(kc+NKC//2)+j]
                                            qf2[i, l, 4*kc+j] = x0*c - x1*s; qf2[i, l, 4*(kc+NKC//2)+j] = x0*s + x1*c
                        else:
                            for kc in range(NKC):
                                for j in (0, 2):
                                    th = theta_of(8*kc + tig[l] + 2*j, n_dims, base, fscale)
                                    for i in range(2):
                                        if rg[i][l]:
                                            c, s = cos_sin(dq[i][l], th)
                                            x0, x1 = qf2[i, l, 4*kc+j], qf2[i, l, 4*kc+j+1]
                                            qf2[i, l, 4*kc+j] = x0*c - x1*s; qf2[i, l, 4*kc+j+1] = x0*s + x1*c
                    Qg = pack(qf2)
                    st.update(rt=rt, rh=rh, rp=rp, rv=rv, rg=rg, Qn=Qn, Qg=Qg,
                              O=np.zeros((NDT, 4, 32), dtype=f32), Mr=np.full((2, 32), -np.finfo(f32).max/2, dtype=f32),
                              Lr=np.zeros((2, 32), dtype=f32))
                    W_.append(st)
                kv_lo = split*kv_per_split; kv_hi = min(n_kv, kv_lo + kv_per_split)
                nqv = min(nq, n_q - t0)
                while kv_hi > kv_lo:
                    c0 = kv_lo + ((kv_hi - 1 - kv_lo)//KV)*KV
                    anyf = np.isfinite(Msk[seq % Msk.shape[0], t0:t0+nqv, c0:kv_hi].astype(np.float32)).any()
                    if anyf: break
                    kv_hi = c0
                ntiles = (kv_hi - kv_lo + KV - 1)//KV
                # rotation thread state
                rstate = [dict(dcur=0x40000000, cs=(f32(1), f32(0))) for _ in range(NT)]
                for it in range(ntiles):
                    k0 = kv_lo + it*KV; nk = min(KV, kv_hi - k0)
                    sK = np.zeros(KV*ST, dtype=f16); sV = np.zeros(KV*ST, dtype=f16); sG = np.zeros(KV*ST, dtype=f16)
                    cP = np.zeros(KV, int)
                    for kk in range(KV):
                        key = k0 + kk
                        if key < kv_hi:
                            sK[kk*ST:kk*ST+D] = K[seq, kvh, key]; sV[kk*ST:kk*ST+D] = V[seq, kvh, key]; cP[kk] = PK[seq, key]
                    pmin = cP[:nk].min(); pmax = cP[:nk].max()
                    if qgmax is not None and qgmax - pmin >= W:
                        TPK = NT//(D//2); KC = KV//TPK
                        for tid in range(NT):
                            rd, rkc = tid % (D//2), tid // (D//2)
                            th = theta_of(rd, n_dims, base, fscale); e1 = cos_sin(1, th)
                            stt = rstate[tid]
                            for kk in range(rkc*KC, (rkc+1)*KC):
                                pk = int(cP[kk]); dk = floordiv(pk, G) - pk
                                if dk != stt['dcur']:
                                    stt['cs'] = step(stt['cs'], e1) if dk == stt['dcur'] - 1 else cos_sin(dk, th)
                                    stt['dcur'] = dk
                                c, s = stt['cs']
                                i0, i1 = (rd, rd + D//2) if neox else (2*rd, 2*rd+1)
                                x0, x1 = f32(sK[kk*ST+i0]), f32(sK[kk*ST+i1])
                                sG[kk*ST+i0] = f16(x0*c - x1*s); sG[kk*ST+i1] = f16(x0*s + x1*c)
                    for w in range(NW):
                        st = W_[w]; rv, rg, rp, rt = st['rv'], st['rg'], st['rp'], st['rt']
                        ln = np.zeros(32, bool); lg = np.zeros(32, bool)
                        for i in range(2):
                            ln |= rv[i] & ~(rg[i] & (rp[i] - pmax >= W))
                            lg |= rv[i] & (rg[i] & (rp[i] - pmin >= W))
                        wn, wg = ln.any(), lg.any()
                        if not wn and not wg: continue
                        Sc = np.zeros((KV//8, 4, 32), dtype=f32)
                        for nt in range(KV//8):
                            an = np.zeros((4, 32), dtype=f32); ag = np.zeros((4, 32), dtype=f32)
                            for (flag, buf, Qx, acc) in ((wn, sK, st['Qn'], an), (wg, sG, st['Qg'], ag)):
                                if not flag: continue
                                for kc2 in range(NKC//2):
                                    addr = (8*nt + (lanes & 7))*ST + 32*kc2 + 8*(lanes >> 3)
                                    b = ldmatrix_x4(buf, addr)
                                    mma(acc, Qx[2*kc2], b[0], b[1]); mma(acc, Qx[2*kc2+1], b[2], b[3])
                            for l in range(4):
                                i = l >> 1; kk = 8*nt + 2*tig + (l & 1)
                                if wn and wg:
                                    g = rg[i] & (rp[i] - cP[kk] >= W)
                                else:
                                    g = np.full(32, wg)
                                s = np.where(g, ag[l], an[l]).astype(f32)
                                if softcap: s = (softcap*np.tanh(s)).astype(f32)
                                for ln_ in range(32):
                                    if kk[ln_] >= nk or not rv[i][ln_]:
                                        s[ln_] = -np.inf
                                    else:
                                        s[ln_] += f32(Msk[seq % Msk.shape[0], rt[i][ln_], k0 + kk[ln_]])
                                Sc[nt, l] = s
                        mx = st['Mr'].copy()
                        for nt in range(KV//8):
                            mx[0] = np.maximum(mx[0], np.maximum(Sc[nt, 0], Sc[nt, 1]))
                            mx[1] = np.maximum(mx[1], np.maximum(Sc[nt, 2], Sc[nt, 3]))
                        for i in range(2):
                            mx[i] = np.maximum(mx[i], mx[i][lanes ^ 1]); mx[i] = np.maximum(mx[i], mx[i][lanes ^ 2])
                        so = np.exp(st['Mr'] - mx).astype(f32); st['Mr'] = mx
                        ls = np.zeros((2, 32), dtype=f32)
                        for nt in range(KV//8):
                            for l in range(4):
                                e = np.exp(Sc[nt, l] - mx[l >> 1]).astype(f32); Sc[nt, l] = e; ls[l >> 1] += e
                        st['Lr'] = st['Lr']*so + ls
                        O = st['O']
                        O[:, 0] *= so[0]; O[:, 1] *= so[0]; O[:, 2] *= so[1]; O[:, 3] *= so[1]
                        for kk2 in range(KV//16):
                            A = np.zeros((4, 32, 2), dtype=f16)
                            A[0] = np.stack([Sc[2*kk2, 0], Sc[2*kk2, 1]], 1).astype(f16)
                            A[1] = np.stack([Sc[2*kk2, 2], Sc[2*kk2, 3]], 1).astype(f16)
                            A[2] = np.stack([Sc[2*kk2+1, 0], Sc[2*kk2+1, 1]], 1).astype(f16)
                            A[3] = np.stack([Sc[2*kk2+1, 2], Sc[2*kk2+1, 3]], 1).astype(f16)
                            for nd2 in range(NDT//2):
                                addr = (16*kk2 + (lanes & 7) + 8*((lanes >> 3) & 1))*ST + 16*nd2 + 8*(lanes >> 4)
                                b = ldmatrix_x4(sV, addr, trans=True)
                                mma(O[2*nd2], A, b[0], b[1]); mma(O[2*nd2+1], A, b[2], b[3])
                for w in range(NW):
                    st = W_[w]
                    Lr = st['Lr'].copy()
                    for i in range(2):
                        Lr[i] = Lr[i] + Lr[i][lanes ^ 1]; Lr[i] = Lr[i] + Lr[i][lanes ^ 2]
                    for i in range(2):
                        for l in range(32):
                            if not st['rv'][i][l]: continue
                            t, h = st['rt'][i][l], st['rh'][i][l]
                            for nd in range(NDT):
                                d0 = 8*nd + 2*tig[l]
                                vals = np.array([st['O'][nd, 2*i][l], st['O'][nd, 2*i+1][l]])
                                if nsplit == 1:
                                    inv = 1/Lr[i][l] if Lr[i][l] > 0 else 0
                                    dst[seq, t, h, d0:d0+2] = vals*inv
                                else:
                                    parts[seq, t, h, split, d0:d0+2] = vals
                            if tig[l] == 0 and nsplit > 1:
                                meta[seq, t, h, split] = (st['Mr'][i][l], Lr[i][l])
    if nsplit > 1:
        mx = meta[..., 0].max(-1, keepdims=True)
        f = np.exp(meta[..., 0] - mx)
        num = (f[..., None]*parts).sum(-2); den = (f*meta[..., 1]).sum(-1)
        dst = np.where(den[..., None] > 0, num/np.where(den > 0, den, 1)[..., None], 0)
    return dst

def make_case(D, n_kvh, gqa, n_q, n_kv, ne3, G, W, pos_min, neox, gaps, seed=0, softcap=0.0):
    rng = np.random.default_rng(seed)
    n_head = n_kvh*gqa
    Q = (3*rng.standard_normal((ne3, n_head, n_q, D))).astype(f32)
    K = rng.standard_normal((ne3, n_kvh, n_kv, D)).astype(f16)
    V = rng.standard_normal((ne3, n_kvh, n_kv, D)).astype(f16)
    PK = np.zeros((ne3, n_kv), int); PQ = np.zeros((ne3, n_q), int)
    Msk = np.zeros((ne3, n_q, n_kv), dtype=f16)
    for s in range(ne3):
        PK[s] = 777*s + (np.arange(n_kv) + np.arange(n_kv)//7 if gaps else np.arange(n_kv))
        PQ[s] = PK[s, n_kv - n_q:]
        for i in range(n_q):
            vis = PK[s] <= PQ[s, i]
            if gaps:
                vis &= ~((np.arange(n_kv) % 13 == 5) & (np.arange(n_kv) < n_kv - n_q))
            Msk[s, i] = np.where(vis, 0, -np.inf)
    return Q, K, V, Msk, PQ, PK

def run_mma_cases():
    cases = [
        # D  hkv gqa nq  nkv ns  G   W  pmin neox gaps split cap
        (64,  1, 1, 20, 200, 1,  4, 32,   0, False, False, 1, 0),
        (64,  1, 4, 20, 300, 1,  6, 50,   0, False, True,  1, 0),
        (128, 1, 2, 37, 250, 2,  3, 40,   0, False, True,  2, 0),
        (64,  1, 3, 10, 300, 1,  5, 64, 290, False, False, 3, 0),
        (64,  2, 2, 17, 180, 1,  4, 30,   0, True,  False, 1, 0),
        (128, 1, 8, 9,  330, 1,  7, 20,   0, True,  True,  1, 0),
        (64,  1, 2, 12, 150, 1,  4, 25,   0, False, False, 1, 30.0),
    ]
    for (D, hkv, gqa, nq, nkv, ns, G, W, pmin, neox, gaps, nsplit, cap) in cases:
        Q, K, V, M, PQ, PK = make_case(D, hkv, gqa, nq, nkv, ns, G, W, pmin, neox, gaps, softcap=cap)
        scale = 1/math.sqrt(D)
        ref = reference(Q, K, V, M, PQ, PK, G, W, pmin, D, neox, 10000.0, 1.0, scale, cap)
        em = emulate_mma(Q, K, V, M, PQ, PK, G, W, pmin, D, neox, 10000.0, 1.0, scale/cap if cap else scale, cap, nsplit)
        err = np.abs(em - ref)
        plain = reference(Q, K, V, M, PQ, PK, 1, W, pmin, D, neox, 10000.0, 1.0, scale, cap)
        print(f"D={D} hkv={hkv} gqa={gqa} nq={nq} nkv={nkv} ns={ns} G={G} W={W} pmin={pmin} neox={neox} gaps={gaps} split={nsplit} cap={cap}: "
              f"max err {np.nanmax(err):.2e} nan {np.isnan(em).sum()}  (SE effect {np.abs(plain-ref).max():.2e})", flush=True)

def emulate_vec(Q, K, V, Msk, PQ, PK, G, W, pos_min, n_dims, neox, base, fscale, scale, softcap, NCOLS, nsplit_req):
    ne3, n_head, n_q, D = Q.shape
    assert n_q == 1
    n_kvh, n_kv = K.shape[1], K.shape[2]
    gqa = n_head//n_kvh
    LK = D//8; KPW = 32//LK; NG = 4*KPW; C = 4
    kv_per_split = -(-n_kv//nsplit_req); kv_per_split = -(-kv_per_split//(4*NG))*(4*NG)
    nsplit = -(-n_kv//kv_per_split)
    out = np.zeros((ne3, 1, n_head, D))
    parts = np.zeros((ne3, n_head, nsplit, D)); meta = np.zeros((ne3, n_head, nsplit, 2))
    for seq in range(ne3):
        for bx in range(n_head//NCOLS):
            head0 = bx*NCOLS; kvh = head0//gqa
            for split in range(nsplit):
                k_beg = split*kv_per_split; k_end = min(n_kv, k_beg + kv_per_split)
                run = (k_end - k_beg + NG - 1)//NG
                sM = np.zeros((NG, NCOLS)); sS = np.zeros((NG, NCOLS)); sO = np.zeros((NG, NCOLS, D))
                for gi in range(NG):
                    # emulate the LK lanes of this group together: lane lk holds 8 elements
                    pq = PQ[seq, 0]; gq = pq >= pos_min
                    dq = floordiv(pq, G) + W - W//G - pq if gq else 0
                    idx = []  # element index per (lk, i)
                    for lk in range(LK):
                        off0 = 4*lk if neox else 8*lk; off1 = 4*lk + D//2 if neox else 8*lk + 4
                        idx.append([off0, off0+1, off0+2, off0+3, off1, off1+1, off1+2, off1+3])
                    idx = np.array(idx)
                    def pairs(m):
                        return (m, m+4) if neox else (2*m, 2*m+1)
                    th = np.array([[theta_of(4*lk + m, n_dims, base, fscale) for m in range(4)] for lk in range(LK)])
                    e1 = [[cos_sin(1, th[lk, m]) for m in range(4)] for lk in range(LK)]
                    qn = np.zeros((NCOLS, LK, 8), dtype=f32)
                    for h in range(NCOLS):
                        qn[h] = Q[seq, head0 + h, 0][idx]*f32(scale)
                    qg = qn.copy()
                    if gq:
                        for lk in range(LK):
                            for m in range(4):
                                c, s = cos_sin(dq, th[lk, m]); i0, i1 = pairs(m)
                                for h in range(NCOLS):
                                    x0, x1 = qg[h, lk, i0], qg[h, lk, i1]
                                    qg[h, lk, i0] = x0*c - x1*s; qg[h, lk, i1] = x0*s + x1*c
                    M = np.full(NCOLS, -np.finfo(f32).max/2); S = np.zeros(NCOLS); O = np.zeros((NCOLS, LK, 8))
                    dcur = [0x40000000]*LK; cs = [[(f32(1), f32(0))]*4 for _ in range(LK)]
                    j_beg = k_beg + gi*run; j_end = min(k_end, j_beg + run)
                    for j0 in range(j_beg, j_beg + run, C):
                        s_ = np.zeros((C, NCOLS)); vv = np.zeros((C, LK, 8))
                        for c in range(C):
                            j = j0 + c
                            if j < j_end:
                                x = K[seq, kvh, j].astype(f32)[idx].copy(); vv[c] = V[seq, kvh, j].astype(f32)[np.arange(D).reshape(LK, 8)]
                                pj = PK[seq, j]; mv = float(Msk[seq % Msk.shape[0], 0, j])
                            else:
                                x = np.zeros((LK, 8), dtype=f32); pj = 0; mv = -np.inf
                            g = gq and pq - pj >= W
                            if g:
                                dk = floordiv(pj, G) - pj
                                for lk in range(LK):
                                    if dk != dcur[lk]:
                                        cs[lk] = [step(cs[lk][m], e1[lk][m]) for m in range(4)] if dk == dcur[lk] - 1 else [cos_sin(dk, th[lk, m]) for m in range(4)]
                                        dcur[lk] = dk
                                    for m in range(4):
                                        i0, i1 = pairs(m); cc, ss = cs[lk][m]
                                        x0, x1 = x[lk, i0], x[lk, i1]
                                        x[lk, i0] = x0*cc - x1*ss; x[lk, i1] = x0*ss + x1*cc
                            for h in range(NCOLS):
                                acc = ((qg[h] if g else qn[h])*x).sum()
                                if softcap: acc = softcap*np.tanh(acc)
                                s_[c, h] = acc + mv
                        for h in range(NCOLS):
                            mx = max(M[h], s_[:, h].max()); so = np.exp(M[h] - mx); M[h] = mx
                            pc = np.exp(s_[:, h] - mx); S[h] = S[h]*so + pc.sum()
                            O[h] = O[h]*so + np.tensordot(pc, vv, 1)
                    sM[gi] = M; sS[gi] = S; sO[gi] = O.reshape(NCOLS, D)
                for h in range(NCOLS):
                    mx = sM[:, h].max(); f = np.exp(sM[:, h] - mx)
                    num = (f[:, None]*sO[:, h]).sum(0); den = (f*sS[:, h]).sum()
                    parts[seq, head0+h, split] = num; meta[seq, head0+h, split] = (mx, den)
        mx = meta[seq, ..., 0].max(-1, keepdims=True); f = np.exp(meta[seq, ..., 0] - mx)
        num = (f[..., None]*parts[seq]).sum(-2); den = (f*meta[seq, ..., 1]).sum(-1)
        out[seq, 0] = np.where(den[:, None] > 0, num/np.where(den > 0, den, 1)[:, None], 0)
    return out

def run_vec_cases():
    cases = [
        (64, 1, 4, 300, 1, 6, 50, 0, False, False, 4, 3, 0),
        (128, 1, 4, 500, 2, 8, 64, 0, False, True, 2, 2, 0),
        (64, 2, 2, 260, 1, 4, 30, 0, True, False, 2, 1, 0),
        (128, 1, 3, 400, 1, 5, 40, 0, True, True, 1, 4, 0),
        (64, 1, 2, 300, 1, 4, 40, 250, False, False, 2, 2, 30.0),
    ]
    for (D, hkv, gqa, nkv, ns, G, W, pmin, neox, gaps, NCOLS, nsplit, cap) in cases:
        Q, K, V, M, PQ, PK = make_case(D, hkv, gqa, 1, nkv, ns, G, W, pmin, neox, gaps, softcap=cap)
        scale = 1/math.sqrt(D)
        ref = reference(Q, K, V, M, PQ, PK, G, W, pmin, D, neox, 10000.0, 1.0, scale, cap)
        em = emulate_vec(Q, K, V, M, PQ, PK, G, W, pmin, D, neox, 10000.0, 1.0, scale/cap if cap else scale, cap, NCOLS, nsplit)
        print(f"vec D={D} gqa={gqa} nkv={nkv} ns={ns} G={G} W={W} pmin={pmin} neox={neox} gaps={gaps} ncols={NCOLS} split={nsplit} cap={cap}: max err {np.abs(em-ref).max():.2e}", flush=True)


if __name__ == "__main__":
    run_mma_cases()
    run_vec_cases()
