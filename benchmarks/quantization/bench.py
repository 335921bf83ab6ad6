#!/usr/bin/env python3
"""int8 / quantized HNSW benchmark: hnswlib f32 vs usearch i8/f16/b1 vs faiss IndexHNSWSQ(QT_8bit).

Usage:
  bench.py run N DIM [candidate ...]   -> writes res_N_DIM.json (merges with existing)
  bench.py mem LIB PATH MODE DIM QPATH -> child process: prints JSON with RSS deltas (internal)
  bench.py report                      -> writes results.md from res_*.json
"""
import gc
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
IDX_DIR = os.path.join(HERE, "idx")
PY = sys.executable
K = 10
M = 16
EFC = 200
EFS = 64
NQ = 200
WARM = 50
OVERSAMPLE = (2, 4, 10)
NTHREADS = os.cpu_count() or 2


def clustered(n, dim, seed=1, clusters=1000):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    return (centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)).astype(np.float32)


def normalise(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def rss():
    import psutil
    return psutil.Process().memory_info().rss


def mib(b):
    return b / 2**20


def exact_topk(Q, X, k, mask=None):
    S = Q @ X.T
    if mask is not None:
        S[:, ~mask] = -np.inf
    idx = np.argpartition(-S, k, axis=1)[:, :k]
    return idx


def recall(found, truth):
    r = []
    for f, t in zip(found, truth):
        f = [int(x) for x in f if int(x) >= 0][:K]
        r.append(len(set(f) & set(int(x) for x in t)) / K)
    return float(np.mean(r))


def pct(lat, p):
    return float(np.percentile(np.array(lat) * 1000, p))


# ----------------------------------------------------------------------------- candidates
class Hnswlib:
    name = "hnswlib f32 (cosine)"
    lib = "hnswlib"
    can_view = False

    def version(self):
        import hnswlib
        try:
            from importlib.metadata import version
            return version("hnswlib")
        except Exception:
            return getattr(hnswlib, "__version__", "?")

    def build(self, X, ids):
        import hnswlib
        p = hnswlib.Index(space="cosine", dim=X.shape[1])
        p.init_index(max_elements=len(X), ef_construction=EFC, M=M)
        p.set_num_threads(NTHREADS)
        t = time.perf_counter()
        p.add_items(X, ids, num_threads=NTHREADS)
        bt = time.perf_counter() - t
        p.set_ef(EFS)
        p.set_num_threads(1)
        self.ix = p
        self.dim = X.shape[1]
        return bt, {}

    def search(self, q, k):
        labels, _ = self.ix.knn_query(q, k=k, num_threads=1)
        return labels[0]

    def prep_filter(self, mask):
        lst = mask.tolist()
        return lst.__getitem__

    def search_filtered(self, q, k, f):
        labels, _ = self.ix.knn_query(q, k=k, num_threads=1, filter=f)
        return labels[0]

    def save(self, path):
        self.ix.save_index(path)

    @staticmethod
    def load(path, dim, view=False):
        import hnswlib
        p = hnswlib.Index(space="cosine", dim=dim)
        p.load_index(path)
        p.set_ef(EFS)
        p.set_num_threads(1)
        return p

    @staticmethod
    def child_search(ix, q):
        return ix.knn_query(q, k=K, num_threads=1)[0][0]

    def delete(self, ids):
        t = time.perf_counter()
        for i in ids:
            self.ix.mark_deleted(int(i))
        return time.perf_counter() - t, "mark_deleted(label) per label (Python loop; no batch API); unmark_deleted exists"


class USearch:
    lib = "usearch"
    can_view = True

    def __init__(self, dtype="i8"):
        self.dtype = dtype
        self.name = {"i8": "usearch i8 (cos)", "f16": "usearch f16 (cos)", "b1": "usearch b1 (hamming on sign bits)"}[dtype]
        self.lib = "usearch-" + dtype

    def version(self):
        import usearch
        return usearch.__version__

    def tx(self, v):
        if self.dtype == "b1":
            return np.packbits(v > 0, axis=-1)
        return v

    def build(self, X, ids):
        from usearch.index import Index
        metric = "hamming" if self.dtype == "b1" else "cos"
        ix = Index(ndim=X.shape[1], metric=metric, dtype=self.dtype, connectivity=M,
                   expansion_add=EFC, expansion_search=EFS)
        Xt = self.tx(X)
        t = time.perf_counter()
        ix.add(ids.astype(np.uint64), Xt, threads=NTHREADS)
        bt = time.perf_counter() - t
        self.ix = ix
        self.dim = X.shape[1]
        return bt, {"usearch_memory_usage_MiB": mib(ix.memory_usage)}

    def search(self, q, k):
        return self.ix.search(self.tx(q), k, threads=1).keys

    # usearch's Python search() takes no filter/predicate -> post-filter an oversampled result
    def prep_filter(self, mask):
        sel = mask.mean()
        count = int(math.ceil(K / sel * 2))
        return (mask, count)

    def search_filtered(self, q, k, f):
        mask, count = f
        keys = self.ix.search(self.tx(q), count, threads=1).keys
        keys = keys[mask[keys.astype(np.int64)]]
        return keys[:k]

    def save(self, path):
        self.ix.save(path)

    @staticmethod
    def load(path, dim, view=False):
        from usearch.index import Index
        ix = Index.restore(path, view=view)
        ix.expansion_search = EFS
        return ix

    def delete(self, ids):
        t = time.perf_counter()
        removed = self.ix.remove(ids.astype(np.uint64))
        dt = time.perf_counter() - t
        return dt, f"Index.remove(keys) batch, compact=False; returned {int(np.sum(removed))} removed; size now {len(self.ix)}"


class FaissSQ8:
    name = "faiss IndexHNSWSQ QT_8bit (IP)"
    lib = "faiss"
    can_view = True

    def version(self):
        import faiss
        return faiss.__version__

    def build(self, X, ids):
        import faiss
        faiss.omp_set_num_threads(NTHREADS)
        d = X.shape[1]
        h = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, M, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = EFC
        h.hnsw.efSearch = EFS
        ix = faiss.IndexIDMap(h)
        t = time.perf_counter()
        ix.train(X)
        tt = time.perf_counter() - t
        ix.add_with_ids(X, ids.astype(np.int64))
        bt = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        self.ix, self.h = ix, h
        self.params = faiss.SearchParametersHNSW(efSearch=EFS)
        self.dim = d
        self.n = len(X)
        return bt, {"train_s": tt}

    def search(self, q, k):
        D, I = self.ix.search(q[None, :], k, params=self.params)
        return I[0]

    def prep_filter(self, mask):
        import faiss
        bm = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bm))
        p = faiss.SearchParametersHNSW(efSearch=EFS, sel=sel)
        return (p, sel, bm)  # keep refs alive

    def search_filtered(self, q, k, f):
        D, I = self.ix.search(q[None, :], k, params=f[0])
        return I[0]

    def save(self, path):
        import faiss
        faiss.write_index(self.ix, path)

    @staticmethod
    def load(path, dim, view=False):
        import faiss
        flag = 0 if not view else (faiss.IO_FLAG_MMAP if view == "mmap" else faiss.IO_FLAG_MMAP_IFC)
        ix = faiss.read_index(path, flag)
        return ix

    def delete(self, ids):
        import faiss
        note = ""
        try:
            self.ix.remove_ids(faiss.IDSelectorBatch(ids.astype(np.int64)))
            note = "remove_ids worked?! "
        except Exception as e:
            note = "remove_ids -> RuntimeError '" + str(e).split(":")[-1].strip() + "'; "
        t = time.perf_counter()
        alive = np.ones(self.n, bool)
        alive[ids] = False
        self._del_filter = self.prep_filter(alive)
        dt = time.perf_counter() - t
        self._deleted = True
        return dt, note + "emulated with SearchParametersHNSW(sel=IDSelectorBitmap(alive)) on every search"

    def search_after_delete(self, q, k):
        return self.search_filtered(q, k, self._del_filter)


CANDIDATES = {
    "hnswlib": Hnswlib,
    "usearch-i8": lambda: USearch("i8"),
    "faiss-sq8": FaissSQ8,
    "usearch-f16": lambda: USearch("f16"),
    "usearch-b1": lambda: USearch("b1"),
}


# ----------------------------------------------------------------------------- child: memory
def child_mem(lib, path, mode, dim, qpath):
    import psutil  # noqa
    if lib == "hnswlib":
        import hnswlib  # noqa
    elif lib.startswith("usearch"):
        import usearch.index  # noqa
    else:
        import faiss
        faiss.omp_set_num_threads(1)
    Q = np.load(qpath)
    if lib == "usearch-b1":
        Q = np.packbits(Q > 0, axis=-1)
    gc.collect()
    r0 = rss()
    t = time.perf_counter()
    view = mode != "load"
    if lib == "hnswlib":
        ix = Hnswlib.load(path, dim)
        fn = lambda q: ix.knn_query(q, k=K, num_threads=1)[0][0]
    elif lib.startswith("usearch"):
        ix = USearch.load(path, dim, view=view)
        fn = lambda q: ix.search(q, K, threads=1).keys
    else:
        ix = FaissSQ8.load(path, dim, view=(mode if view else False))
        import faiss
        p = faiss.SearchParametersHNSW(efSearch=EFS)
        fn = lambda q: ix.search(q[None, :], K, params=p)[1][0]
    lt = time.perf_counter() - t
    r1 = rss()
    lat = []
    for q in Q:
        t = time.perf_counter()
        fn(q)
        lat.append(time.perf_counter() - t)
    r2 = rss()
    print(json.dumps({"load_s": lt, "rss_before_MiB": mib(r0), "delta_after_load_MiB": mib(r1 - r0),
                      "delta_after_queries_MiB": mib(r2 - r0), "p50_ms_cold": pct(lat, 50)}))


def run_child(lib, path, mode, dim, qpath):
    r = subprocess.run([PY, __file__, "mem", lib, path, mode, str(dim), qpath], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main bench
def timed_queries(fn, Q):
    for q in Q[:WARM]:
        fn(q)
    res, lat = [], []
    for q in Q:
        t = time.perf_counter()
        r = fn(q)
        lat.append(time.perf_counter() - t)
        res.append(r)
    return res, lat


def bench_one(key, X, Xn, Q, gt, masks, gts_f, gt_del, del_ids, tag):
    c = CANDIDATES[key]()
    out = {"name": c.name, "version": c.version()}
    n, dim = X.shape
    ids = np.arange(n)
    print(f"[{tag}] {c.name}: building ...", flush=True)
    gc.collect()
    bt, extra = c.build(Xn, ids)
    out.update(build_s=bt, vps=n / bt, **extra)
    print(f"[{tag}] {c.name}: build {bt:.1f}s", flush=True)

    # save / load
    os.makedirs(IDX_DIR, exist_ok=True)
    path = os.path.join(IDX_DIR, f"{key}_{tag}.idx")
    t = time.perf_counter()
    c.save(path)
    out["save_s"] = time.perf_counter() - t
    out["file_MiB"] = mib(os.path.getsize(path))
    t = time.perf_counter()
    tmp = c.load(path, dim)
    out["load_s_inproc"] = time.perf_counter() - t
    del tmp
    gc.collect()

    qpath = os.path.join(HERE, f"queries_{tag}.npy")
    out["mem_load"] = run_child(c.lib, path, "load", dim, qpath)
    if c.can_view:
        if key == "faiss-sq8":
            out["mem_view"] = run_child(c.lib, path, "mmap", dim, qpath)
            out["mem_view_ifc"] = run_child(c.lib, path, "mmap_ifc", dim, qpath)
        else:
            out["mem_view"] = run_child(c.lib, path, "view", dim, qpath)
    print(f"[{tag}] {c.name}: mem {out['mem_load']} view {out.get('mem_view')} {out.get('mem_view_ifc', '')}", flush=True)

    # raw search
    res, lat = timed_queries(lambda q: c.search(q, K), Q)
    out["p50_ms"], out["p99_ms"] = pct(lat, 50), pct(lat, 99)
    out["recall"] = recall(res, gt)

    # rescoring with float32 vectors from a numpy array
    out["rescore"] = {}
    for os_ in OVERSAMPLE:
        def fn(q, os_=os_):
            cand = np.asarray(c.search(q, K * os_), dtype=np.int64)
            cand = cand[cand >= 0]
            s = Xn[cand] @ q
            top = np.argpartition(-s, K)[:K] if len(s) > K else np.arange(len(s))
            return cand[top]
        res, lat = timed_queries(fn, Q)
        out["rescore"][str(os_)] = {"recall": recall(res, gt), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    print(f"[{tag}] {c.name}: p50 {out['p50_ms']:.3f} recall {out['recall']:.3f} rescore {out['rescore']}", flush=True)

    # filtered
    out["filtered"] = {}
    for fname, mask in masks.items():
        f = c.prep_filter(mask)
        res, lat = timed_queries(lambda q: c.search_filtered(q, K, f), Q)
        leak = sum(int(np.sum(~mask[np.asarray([x for x in r if x >= 0], dtype=np.int64)])) for r in res)
        out["filtered"][fname] = {"recall": recall(res, gts_f[fname]), "p50_ms": pct(lat, 50),
                                  "p99_ms": pct(lat, 99), "disallowed_returned": leak}
    print(f"[{tag}] {c.name}: filtered {out['filtered']}", flush=True)

    # deletes (mutates: last)
    try:
        dt, note = c.delete(del_ids)
        srch = getattr(c, "search_after_delete", None) or (lambda q, k: c.search(q, k))
        res, lat = timed_queries(lambda q: srch(q, K), Q)
        delset = set(int(x) for x in del_ids)
        leak = sum(1 for r in res for x in r if int(x) in delset)
        out["delete"] = {"supported": True, "time_s": dt, "note": note, "recall": recall(res, gt_del),
                         "p50_ms": pct(lat, 50), "deleted_returned": leak}
    except Exception as e:
        out["delete"] = {"supported": False, "note": repr(e)[:300]}
    print(f"[{tag}] {c.name}: delete {out['delete']}", flush=True)
    try:
        os.remove(path)
    except OSError:
        pass
    return out


def main_run(n, dim, keys):
    tag = f"{n}x{dim}"
    t0 = time.perf_counter()
    data = clustered(n + 200, dim)
    X, Qr = data[:n], data[n:]
    Xn, Q = normalise(X), normalise(Qr)
    np.save(os.path.join(HERE, f"queries_{tag}.npy"), Q)
    gt = exact_topk(Q, Xn, K)
    ids = np.arange(n)
    masks = {"10%": ids % 10 == 0, "1%": ids % 100 == 0}
    gts_f = {k: exact_topk(Q, Xn, K, m) for k, m in masks.items()}
    del_ids = ids[ids % 10 == 0]
    alive = np.ones(n, bool)
    alive[del_ids] = False
    gt_del = exact_topk(Q, Xn, K, alive)

    # reference: numpy brute force over the allowed subset (no index)
    ref = {}
    for fname, m in masks.items():
        sub = Xn[m]
        subids = ids[m]
        def fn(q):
            s = sub @ q
            return subids[np.argpartition(-s, K)[:K]]
        res, lat = timed_queries(fn, Q)
        ref[fname] = {"recall": recall(res, gts_f[fname]), "p50_ms": pct(lat, 50)}
    def fn_full(q):
        s = Xn @ q
        return np.argpartition(-s, K)[:K]
    _, lat = timed_queries(fn_full, Q[:100])
    ref["full_bruteforce_p50_ms"] = pct(lat, 50)
    print(f"[{tag}] data+gt {time.perf_counter() - t0:.1f}s; numpy refs {ref}", flush=True)

    resf = os.path.join(HERE, f"res_{tag}.json")
    allres = json.load(open(resf)) if os.path.exists(resf) else {}
    allres["_meta"] = {"n": n, "dim": dim, "numpy": np.__version__, "numpy_ref": ref,
                       "loadavg_start": os.getloadavg()}
    for key in keys:
        t = time.perf_counter()
        try:
            allres[key] = bench_one(key, X, Xn, Q, gt, masks, gts_f, gt_del, del_ids, tag)
        except Exception as e:
            import traceback
            traceback.print_exc()
            allres[key] = {"name": key, "error": repr(e)[:300]}
        allres[key]["wall_s"] = time.perf_counter() - t
        allres[key]["loadavg_after"] = os.getloadavg()
        json.dump(allres, open(resf, "w"), indent=1)
        gc.collect()
    print(f"[{tag}] total {time.perf_counter() - t0:.1f}s", flush=True)


# ----------------------------------------------------------------------------- report
def f(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def report():
    import glob
    lines = ["# int8 / quantized HNSW candidates — measurements", ""]
    files = sorted(glob.glob(os.path.join(HERE, "res_*.json")), key=lambda p: json.load(open(p))["_meta"]["dim"])
    for p in files:
        R = json.load(open(p))
        meta = R["_meta"]
        lines.append(f"## {meta['n']:,} x {meta['dim']} (clustered, 1000 centres; 200 queries; k=10, M=16, efC=200, efS=64)")
        lines.append("")
        hdr = ["candidate", "build s", "vectors/s", "file MiB", "loaded RSS MiB", "viewed RSS MiB (after load / after 200 q)",
               "p50 / p99 ms", "recall@10 raw", "rescored x2 / x4 / x10 recall", "rescored p50 ms x2 / x4 / x10",
               "delete 10%: support, time, recall", "filtered 10%: p50 ms, recall", "filtered 1%: p50 ms, recall"]
        lines.append("| " + " | ".join(hdr) + " |")
        lines.append("|" + "---|" * len(hdr))
        for key in ["hnswlib", "usearch-i8", "faiss-sq8", "usearch-f16", "usearch-b1"]:
            if key not in R:
                continue
            r = R[key]
            if "error" in r:
                lines.append(f"| {r['name']} | ERROR: {r['error']} |" + " |" * (len(hdr) - 2))
                continue
            ml = r["mem_load"]
            loaded = f(ml.get("delta_after_load_MiB")) if "error" not in ml else "err"
            def vw(m):
                if m is None:
                    return None
                if "error" in m:
                    return "err: " + m["error"][:60]
                return f"{f(m['delta_after_load_MiB'])} / {f(m['delta_after_queries_MiB'])}"
            if key == "faiss-sq8":
                viewed = f"MMAP: {vw(r.get('mem_view'))}; MMAP_IFC: {vw(r.get('mem_view_ifc'))}"
            elif r.get("mem_view"):
                viewed = vw(r["mem_view"])
            else:
                viewed = "no mmap"
            rs = r["rescore"]
            d = r["delete"]
            if d.get("supported"):
                dl = f"yes, {f(d['time_s'], 3)} s, {f(d['recall'], 3)}"
                if key == "faiss-sq8":
                    dl = f"no remove_ids; selector: {f(d['time_s'], 3)} s, {f(d['recall'], 3)}"
            else:
                dl = "no"
            fl = r["filtered"]
            lines.append("| " + " | ".join([
                f"{r['name']} ({r['version']})", f(r["build_s"]), f"{r['vps']:,.0f}", f(r["file_MiB"]), loaded, viewed,
                f"{f(r['p50_ms'], 3)} / {f(r['p99_ms'], 3)}", f(r["recall"], 3),
                " / ".join(f(rs[o]["recall"], 3) for o in ("2", "4", "10")),
                " / ".join(f(rs[o]["p50_ms"], 3) for o in ("2", "4", "10")),
                dl,
                f"{f(fl['10%']['p50_ms'], 3)}, {f(fl['10%']['recall'], 3)}",
                f"{f(fl['1%']['p50_ms'], 3)}, {f(fl['1%']['recall'], 3)}",
            ]) + " |")
        lines.append("")
        ref = meta["numpy_ref"]
        lines.append(f"Reference (numpy, no index, 1 query at a time): exact brute force over all {meta['n']:,} vectors p50 "
                     f"{f(ref['full_bruteforce_p50_ms'], 3)} ms; over the allowed 10% subset p50 {f(ref['10%']['p50_ms'], 3)} ms, "
                     f"1% subset p50 {f(ref['1%']['p50_ms'], 3)} ms (recall 1.0).")
        lines.append("")
        lines.append("Extra per-candidate details:")
        lines.append("")
        for key in ["hnswlib", "usearch-i8", "faiss-sq8", "usearch-f16", "usearch-b1"]:
            if key not in R or "error" in R[key]:
                continue
            r = R[key]
            ml = r["mem_load"]
            bits = [f"save {f(r['save_s'], 2)} s", f"load in-process {f(r['load_s_inproc'], 2)} s"]
            if "load_s" in ml:
                bits.append(f"load in fresh process {f(ml['load_s'], 2)} s, RSS after 200 queries {f(ml['delta_after_queries_MiB'])} MiB, p50 there {f(ml['p50_ms_cold'], 3)} ms")
            for vk in ("mem_view", "mem_view_ifc"):
                m = r.get(vk)
                if m and "load_s" in m:
                    bits.append(f"{vk.replace('mem_', '')}: open {f(m['load_s'], 3)} s, p50 (cold, first 200 q) {f(m['p50_ms_cold'], 3)} ms")
                elif m:
                    bits.append(f"{vk}: {m}")
            if "train_s" in r:
                bits.append(f"SQ train {f(r['train_s'], 2)} s (included in build)")
            if "usearch_memory_usage_MiB" in r:
                bits.append(f"Index.memory_usage {f(r['usearch_memory_usage_MiB'])} MiB")
            rs = r["rescore"]
            bits.append("rescored p99 ms x2/x4/x10: " + " / ".join(f(rs[o]["p99_ms"], 3) for o in ("2", "4", "10")))
            fl = r["filtered"]
            bits.append(f"filtered p99 ms 10%/1%: {f(fl['10%']['p99_ms'], 3)} / {f(fl['1%']['p99_ms'], 3)}; "
                        f"disallowed ids returned: {fl['10%']['disallowed_returned']} / {fl['1%']['disallowed_returned']}")
            d = r["delete"]
            if d.get("supported"):
                bits.append(f"after delete: p50 {f(d['p50_ms'], 3)} ms, deleted ids returned {d['deleted_returned']}; API: {d['note']}")
            else:
                bits.append(f"delete: {d['note']}")
            bits.append(f"bench wall {f(r['wall_s'])} s, loadavg after {', '.join(f(x, 2) for x in r['loadavg_after'])}")
            lines.append(f"- **{r['name']}**: " + "; ".join(bits))
        lines.append("")
    notes = os.path.join(HERE, "notes.md")
    if os.path.exists(notes):
        lines.append(open(notes).read())
    open(os.path.join(HERE, "results.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "run":
        n, dim = int(sys.argv[2]), int(sys.argv[3])
        keys = sys.argv[4:] or ["hnswlib", "usearch-i8", "faiss-sq8", "usearch-f16", "usearch-b1"]
        main_run(n, dim, keys)
    elif cmd == "mem":
        child_mem(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    elif cmd == "report":
        report()
