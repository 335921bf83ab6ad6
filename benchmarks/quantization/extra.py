# Extra checks on 100k x 128 (run after bench.py): faiss filtered efSearch sweep, IDSelectorBatch vs Bitmap,
# usearch remove(compact=True) cost.
import time, json, numpy as np, faiss
from bench import clustered, normalise, exact_topk, recall, pct, K
n, dim = 100000, 128
d = clustered(n + 200, dim); X, Q = normalise(d[:n]), normalise(d[n:])
ids = np.arange(n); out = {}
faiss.omp_set_num_threads(2)
h = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, 16, faiss.METRIC_INNER_PRODUCT); h.hnsw.efConstruction = 200
ix = faiss.IndexIDMap(h); ix.train(X); ix.add_with_ids(X, ids.astype(np.int64))
faiss.omp_set_num_threads(1)
for fname, m in {"10%": ids % 10 == 0, "1%": ids % 100 == 0}.items():
    gt = exact_topk(Q, X, K, m)
    bm = np.packbits(m, bitorder="little")
    sels = {"bitmap": faiss.IDSelectorBitmap(n, faiss.swig_ptr(bm)), "batch": faiss.IDSelectorBatch(ids[m].astype(np.int64))}
    for sn, sel in sels.items():
        for ef in (64, 256, 1000):
            p = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
            lat, res = [], []
            for q in Q:
                t = time.perf_counter(); I = ix.search(q[None], K, params=p)[1][0]; lat.append(time.perf_counter() - t); res.append(I)
            out[f"faiss {fname} {sn} efSearch={ef}"] = (round(pct(lat, 50), 3), round(recall(res, gt), 3))
from usearch.index import Index
u = Index(ndim=dim, metric="cos", dtype="i8", connectivity=16, expansion_add=200, expansion_search=64)
u.add(ids.astype(np.uint64), X)
t = time.perf_counter(); u.remove(ids[ids % 10 == 0].astype(np.uint64), compact=True); out["usearch i8 remove 10% compact=True s"] = round(time.perf_counter() - t, 2)
alive = ids % 10 != 0; gt = exact_topk(Q, X, K, alive)
res = [u.search(q, K, threads=1).keys for q in Q]; out["usearch i8 recall after compact remove"] = round(recall(res, gt), 3)
for k_, v in out.items(): print(k_, v)
json.dump(out, open("extra.json", "w"), indent=1)
