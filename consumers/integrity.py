"""verify and repair: checking what is served against what the log says (backups: ``consumers.backup``).

Definitions used throughout:
- *catalog position* X: the tracking rows of this projection;
- *served state*: what a restart would serve at X — the newest verified snapshot plus the
  log replayed in memory up to X (nothing is written anywhere while building it);
- *truth*: the log replayed in memory from offset 0 up to X, with the catalog rows the
  projector would have written (:class:`consumers.replay.CatalogMirror`).

Every problem is a sentence naming the collection, the point or the file, and what is wrong.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from consumers import logid, sealedfiles, snapshots
from consumers.replay import CatalogMirror, ReplayResult, ahead_of_log, log_ends, replay_into
from infra.process import masked_url
from infra.settings import Settings
from projections.catalog.store import Catalog
from projections.collection import Collection, canonical_json, point_checksum
from projections.errors import CatalogUnavailable
from projections.payload_index import FieldIndex
from projections.search import search
from projections.state import ProjectionState
from schemas.errors import DecodeError
from schemas.ids import catalog_key
from schemas.sealing import SealingKeys

# How far the served index's sampled recall@10 may trail that of an index freshly built from the
# log with the same parameters (sampling noise, and hnswlib's multi-threaded inserts making each
# build's graph a little different), before the served one is reported as damaged.
RECALL_TOLERANCE = 0.1


@dataclass
class Problem:
    kind: str  # log | snapshot | catalog | index | payload index | recall | against
    collection: str | None
    detail: str

    def __str__(self) -> str:
        where = f"[{self.collection}] " if self.collection else ""
        return f"{self.kind}: {where}{self.detail}"


@dataclass
class Report:
    offsets: dict[int, int]
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "offsets": self.offsets, "checked": self.checked,
                "problems": [asdict(p) for p in self.problems]}


# Building the states ---------------------------------------------------------------
def served_state(settings: Settings, until: dict[int, int],
                 replayed: ReplayResult | None = None) -> tuple[ProjectionState, str | None]:
    """The state a restart would serve at ``until``: newest good snapshot + in-memory tail.

    Without a usable snapshot a restart replays the whole log: ``replayed`` (a replay from
    offset 0 up to ``until``, when the caller already has one) is that state, not rebuilt.
    """
    with sealedfiles.opened_keys(settings) as keys:
        loaded = snapshots.load_newest(settings.snapshot_dir, settings.segment_bytes, keys)
    if loaded is None or any(o > until.get(p, -1) for p, o in loaded.offsets.items()):
        return (replayed or replay_into(settings, until=until)).state, None
    return replay_into(settings, loaded.state, loaded.offsets, until).state, loaded.snapshot_id


def truth(settings: Settings, until: dict[int, int]) -> ReplayResult:
    return replay_into(settings, until=until)


# Before anything is replayed ---------------------------------------------------------
def open_existing(settings: Settings) -> Catalog | None:
    """The configured catalog if it exists and holds the catalog's tables; None otherwise.

    Never creates or migrates anything: the tools that check a projection must not make one.
    """
    try:
        catalog = Catalog.of(settings, create=False)
    except CatalogUnavailable:
        if settings.catalog_file is not None and not settings.catalog_file.exists():
            return None
        raise
    if not catalog.has_schema():
        catalog.close()
        return None
    return catalog


def log_problems(settings: Settings, catalog: Catalog | None, position: dict[int, int],
                 ends: dict[int, int]) -> list[Problem]:
    """What makes a check against the log meaningless: no catalog (or an empty one) beside a log that
    holds records, or tracking rows at or past the log's end (the log changed beneath the projection)."""
    problem = ahead_of_log(position, ends)
    if problem is not None:
        return [Problem("log", None, problem)]
    stored = None if catalog is None else catalog.log_identity()
    if stored is not None:  # the catalog names the log it was built from: is it this one?
        changed = logid.diagnose(settings, logid.LogIdentity(*stored), position)
        if changed:
            return [Problem("log", None, f"{'; '.join(changed)}: {logid.advice()}")]
    written = {p: e for p, e in ends.items() if e > 0}
    if written and not position:
        where = (f"no catalog at {catalog_location(settings)}" if catalog is None else
                 f"the catalog at {catalog_location(settings)} is empty (no tracking rows)")
        log_at = ", ".join(f"{p}:{e}" for p, e in sorted(written.items()))
        return [Problem("catalog", None, f"{where} but the log ends at {log_at}: the catalog was deleted or "
                                         f"this is not the data directory the server uses; rebuild it with "
                                         f"`vectorizer replay --from-beginning` or `vectorizer restore` a backup")]
    return []


def catalog_location(settings: Settings) -> str:
    path = settings.catalog_file
    if path is not None:
        return str(path)
    return masked_url(settings.resolved_catalog_url)


# verify -------------------------------------------------------------------------------
def verify(settings: Settings, name: str | None = None, against: Path | None = None,
           recall_samples: int = 50) -> Report:
    """Check snapshots, catalog and index against the log at the catalog position (module doc).

    A missing or empty catalog beside a non-empty log, and a catalog ahead of the log's end, are
    problems of their own (kind ``log`` / ``catalog``), reported without replaying anything;
    nothing is ever created.
    """
    catalog = open_existing(settings)
    try:
        position = catalog.positions() if catalog is not None else {}
        first = log_problems(settings, catalog, position, log_ends(settings))
        if first or catalog is None:
            return Report(position, first, {"collections": [], "points": 0})
        return _verify(settings, catalog, position, truth(settings, position), name, against, recall_samples)
    finally:
        if catalog is not None:
            catalog.close()


def _verify(settings: Settings, catalog: Catalog, position: dict[int, int], expected: ReplayResult,
            name: str | None = None, against: Path | None = None, recall_samples: int = 50) -> Report:
    """verify at ``position`` given the log's truth there (computed once by the caller)."""
    with sealedfiles.opened_keys(settings) as keys:  # sealed files and catalog payloads: their tags are checked too
        catalog.keys = keys
        try:
            return _verify_with(settings, catalog, keys, position, expected, name, against, recall_samples)
        finally:
            catalog.keys = None  # closed with the block


def _verify_with(settings: Settings, catalog: Catalog, keys: SealingKeys | None,
                 position: dict[int, int], expected: ReplayResult, name: str | None, against: Path | None,
                 recall_samples: int) -> Report:
    report = Report(position)
    # Every sealed record's AES-GCM tag was checked by the replay; shredded ones count as deleted.
    report.checked["encrypted"] = {"records": expected.sealed, "shredded": expected.shredded,
                                   "authentication_failed": len(expected.unauthentic)}
    report.problems += [Problem("log", None, f"record {where}") for where in expected.unauthentic]
    for path in snapshots.list_snapshots(settings.snapshot_dir):
        report.problems += [Problem("snapshot", None, p) for p in snapshots.verify(path, keys=keys,
                                                                                  authenticate=True)]
    served, snapshot_id = served_state(settings, position, expected)
    report.checked["snapshot_loaded"] = snapshot_id
    names = sorted(set(expected.mirror.collections) | set(served.collections)
                   | {r["name"] for r in catalog.collection_rows()})
    report.checked["recall"] = {}
    for coll_name in names:
        if name is not None and coll_name != name:
            continue
        report.problems += _check_catalog(catalog, expected.mirror, coll_name)
        report.problems += _check_index(served.get(coll_name), expected.mirror, coll_name)
        report.problems += _check_payload_indexes(served.get(coll_name), expected.state.get(coll_name), coll_name)
        problems, recall = _check_recall(served.get(coll_name), expected.state.get(coll_name), coll_name,
                                         recall_samples)
        report.problems += problems
        if recall is not None:
            report.checked["recall"][coll_name] = recall
    if name is None:
        report.problems += _check_aliases(catalog, expected.state.aliases, served.aliases)
    report.checked["collections"] = [n for n in names if name is None or n == name]
    report.checked["points"] = sum(len(expected.mirror.points.get(n, {})) for n in report.checked["collections"])
    if against is not None:
        other = settings.replace(data_dir=against, catalog_url="")
        theirs_catalog = open_existing(other)
        other_pos = theirs_catalog.positions() if theirs_catalog is not None else {}
        if theirs_catalog is not None:
            theirs_catalog.close()
        if other_pos != position:
            report.problems.append(Problem("against", None, f"{against} is at offsets {other_pos}, this data "
                                                            f"directory at {position}"))
        else:
            theirs, _ = served_state(other, position)
            for coll_name in report.checked["collections"]:
                report.problems += _compare_states(served.get(coll_name), theirs.get(coll_name), coll_name, against)
    return report


_ALIASES = "aliases "


def _check_aliases(catalog: Catalog, want: dict[str, str], served: dict[str, str]) -> list[Problem]:
    """The catalog's and the served state's aliases against the log's."""
    problems = []
    rows = catalog.alias_rows()
    if rows != want:
        problems.append(Problem("catalog", None, f"{_ALIASES}{sorted(rows.items())}, the log says "
                                                 f"{sorted(want.items())}"))
    if served != want:
        problems.append(Problem("index", None, f"{_ALIASES}{sorted(served.items())}, the log says "
                                               f"{sorted(want.items())}"))
    return problems


def _row_of(catalog: Catalog, row: dict[str, Any]) -> tuple[Any, ...]:
    """A catalog row's label, clear payload, checksum and version; raises what opening a sealed
    payload raises (``schemas.errors.DecodeError``: shredded, key unavailable, authentication failed)."""
    return (row["label"], catalog.payload(row), row["checksum"], row["version"])


def _check_catalog(catalog: Catalog, mirror: CatalogMirror, name: str) -> list[Problem]:
    problems: list[Problem] = []
    rows = {r["name"]: r for r in catalog.collection_rows()}
    if name not in mirror.collections:
        if name in rows:
            problems.append(Problem("catalog", name, "collection exists in the catalog but not in the log"))
        return problems
    event, _ = mirror.collections[name]
    row = rows.get(name)
    if row is None:
        return [Problem("catalog", name, "collection is missing from the catalog")]
    for attr in ("dimension", "metric", "m", "ef_construction", "ef", "kind"):
        if row[attr] != getattr(event, attr):
            problems.append(Problem("catalog", name, f"{attr} is {row[attr]!r}, the log says {getattr(event, attr)!r}"))
    want = mirror.points.get(name, {})
    have = {r["point_key"]: r for r in catalog.point_rows(name)}
    for key in sorted(set(want) - set(have)):
        problems.append(Problem("catalog", name, f"point {key} is missing"))
    for key in sorted(set(have) - set(want)):
        problems.append(Problem("catalog", name, f"point {key} is not in the log (deleted or never written)"))
    for key in sorted(set(want) & set(have)):
        w = want[key]
        try:
            h = _row_of(catalog, have[key])
        except DecodeError as exc:  # a sealed payload that does not open: damaged, swapped, or its key gone
            problems.append(Problem("catalog", name, f"point {key}: payload: {exc}"))
            continue
        for attr, theirs in zip(("label", "payload", "checksum", "version"), h, strict=True):
            if getattr(w, attr) != theirs:
                problems.append(Problem("catalog", name, f"point {key}: {attr} differs from the log"))
    return problems


def _check_index(coll: Collection | None, mirror: CatalogMirror, name: str) -> list[Problem]:
    want = mirror.points.get(name)
    if coll is None:
        return [] if want is None else [Problem("index", name, "collection is missing from the index")]
    if want is None:
        return [Problem("index", name, "collection is in the index but not in the log")]
    problems: list[Problem] = []
    have = {catalog_key(pid): lbl for pid, lbl in coll.label_of.items()}
    for key in sorted(set(want) - set(have)):
        problems.append(Problem("index", name, f"point {key} is missing from the index"))
    for key in sorted(set(have) - set(want)):
        problems.append(Problem("index", name, f"point {key} is in the index but deleted or never written"))
    common = sorted(set(want) & set(have))
    labels = [have[k] for k in common]
    for start in range(0, len(common), 65_536):
        keys, chunk = common[start:start + 65_536], labels[start:start + 65_536]
        try:
            vectors: list[Any] = list(coll.vector_records(chunk))
        except RuntimeError:  # hnswlib has no vector for a label said to hold one: find which, one by one
            vectors = [_vector_or_none(coll, label) for label in chunk]
        for key, label, vector in zip(keys, chunk, vectors, strict=True):
            if vector is None:
                problems.append(Problem("index", name, f"point {key}: its label {label} is not in the HNSW index"))
                continue
            text = canonical_json(coll.payload_of.get(label))
            if point_checksum(vector, text) == want[key].checksum:
                continue
            if coll.config.has_unnamed and not coll.index.holds(np.array([label]))[0]:
                # No row (the same as a point whose vector was deleted), where the log's point differs.
                problems.append(Problem("index", name, f"point {key}: its label {label} is not in the HNSW index, "
                                                       "and the point differs from the log"))
            else:
                problems.append(Problem("index", name, f"point {key}: vector or payload differs from the log"))
    if len(coll.id_of) + len(coll.free_labels) != coll.next_label:
        problems.append(Problem("index", name, f"label allocator inconsistent: {len(coll.id_of)} live + "
                                               f"{len(coll.free_labels)} free != {coll.next_label}"))
    return problems


def _check_payload_indexes(served: Collection | None, fresh: Collection | None, name: str) -> list[Problem]:
    """The served collection has the payload indexes the log defines, and each holds exactly the
    values of the payloads served (an index rebuilt from them holds the same pairs)."""
    if served is None or fresh is None:
        return []
    problems: list[Problem] = []
    if served.config.payload_schema() != fresh.config.payload_schema():
        problems.append(Problem("payload index", name, f"indexes {sorted(served.config.payload_schema())}, the "
                                                       f"log defines {sorted(fresh.config.payload_schema())}"))
    for index in served.indexes:
        rebuilt = FieldIndex(index.field, index.schema)
        rebuilt.build(served.payload_of)
        if index.pairs() != rebuilt.pairs() or index.points != rebuilt.points:
            problems.append(Problem("payload index", name, f"index on {index.field!r} differs from its payloads "
                                                           f"({index.points} points indexed, {rebuilt.points} hold "
                                                           f"values)"))
    return problems


def _vector_or_none(coll: Collection, label: int) -> np.ndarray | bytes | None:
    try:
        return coll.vector_records([label])[0]
    except RuntimeError:
        return None


def _check_recall(served: Collection | None, fresh: Collection | None, name: str,
                  samples: int) -> tuple[list[Problem], dict[str, Any] | None]:
    """The served index's sampled recall@10 against what an index freshly built from the log gets.

    HNSW's recall depends on the data and the collection's ``m``/``ef``: random vectors at a
    small ``ef`` stay well below 1 in a perfectly sound index. So the reference is ``fresh``
    (the log replayed into a new index with the same parameters): the same queries, near
    ``samples`` of the log's points, are answered by both and compared with exact search
    over the log's vectors; the served index is damaged when its recall trails by more than
    :data:`RECALL_TOLERANCE`. Both recalls are returned as information (``checked.recall``),
    and any deleted point that search returns is a problem.
    """
    if served is None or fresh is None or len(fresh) < 20 or not fresh.config.has_unnamed:
        return [], None  # the recall of named vectors is not sampled
    rng = np.random.default_rng(0)
    live = fresh.index.live_labels()  # the points holding the unnamed vector (delete_vectors may drop it)
    if len(live) < 20:
        return [], None
    picks = rng.choice(live, size=min(samples, len(live)), replace=False)
    queries = fresh.index.vectors(picks) + rng.normal(scale=0.01, size=(len(picks), fresh.config.dimension))
    got, reference = [], []
    problems: list[Problem] = []
    for q in queries.astype(np.float32):
        exact = {h.id for h in search(fresh, q, 10, exact=True)}
        approx = [h.id for h in search(served, q, 10)]
        got.append(len(exact & set(approx)) / max(1, len(exact)))
        reference.append(got[-1] if served is fresh else
                         len(exact & {h.id for h in search(fresh, q, 10)}) / max(1, len(exact)))
        ghosts = [pid for pid in approx if pid not in fresh.label_of]
        if ghosts:
            problems.append(Problem("index", name, f"deleted points returned by search: {ghosts[:5]}"))
    mean, expected = float(np.mean(got)), float(np.mean(reference))
    if mean < expected - RECALL_TOLERANCE:
        problems.append(Problem("recall", name, f"sampled recall@10 is {mean:.3f} over {len(got)} queries, an "
                                                f"index freshly built from the log gets {expected:.3f} (ef "
                                                f"{fresh.config.ef}, m {fresh.config.m})"))
    return problems, {"served": round(mean, 3), "fresh_build": round(expected, 3), "queries": len(got),
                      "ef": fresh.config.ef, "m": fresh.config.m}


def _compare_states(mine: Collection | None, theirs: Collection | None, name: str, other: Path) -> list[Problem]:
    if mine is None or theirs is None:
        return [] if mine is theirs else [Problem("against", name, f"collection present on one side only ({other})")]
    a, b = _checksums(mine), _checksums(theirs)
    problems = [Problem("against", name, f"point {k} only here") for k in sorted(set(a) - set(b))]
    problems += [Problem("against", name, f"point {k} only in {other}") for k in sorted(set(b) - set(a))]
    problems += [Problem("against", name, f"point {k} differs") for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return problems


def _checksums(coll: Collection) -> dict[str, str]:
    pids = list(coll.label_of)
    labels = [coll.label_of[p] for p in pids]
    vectors = coll.vector_records(labels)
    return {catalog_key(p): point_checksum(v, canonical_json(coll.payload_of.get(coll.label_of[p])))
            for p, v in zip(pids, vectors, strict=True)}


# repair -------------------------------------------------------------------------------
def repair(settings: Settings, name: str | None = None) -> Report:
    """Rebuild from the log what verify finds broken; return the verify report after repair.

    Catalog: the rows of each damaged collection are rewritten from the log in one
    transaction per collection (other collections are untouched and keep serving).
    Snapshots: damaged ones are removed and a fresh snapshot of the log's state at the
    catalog position is written, so the next restart loads a sound index.
    """
    catalog = open_existing(settings)
    try:
        position = catalog.positions() if catalog is not None else {}
        first = log_problems(settings, catalog, position, log_ends(settings))
        if first or catalog is None:  # nothing to mend from: rebuilding is replay's job
            return Report(position, first, {"collections": [], "points": 0})
        expected = truth(settings, position)  # one replay serves the checks before and after
        before = _verify(settings, catalog, position, expected, name)
        if before.ok:
            return before
        _mend(settings, catalog, position, expected, before)
        return _verify(settings, catalog, position, expected, name)
    finally:
        if catalog is not None:
            catalog.close()


def _mend(settings: Settings, catalog: Catalog, position: dict[int, int], expected: ReplayResult,
          before: Report) -> None:
    with sealedfiles.opened_keys(settings) as keys:  # rewritten rows are sealed as the projector seals them
        catalog.keys = keys
        try:
            _mend_with(settings, catalog, keys, position, expected, before)
        finally:
            catalog.keys = None


def _mend_with(settings: Settings, catalog: Catalog, keys: SealingKeys | None,
               position: dict[int, int], expected: ReplayResult, before: Report) -> None:
    damaged = {p.collection for p in before.problems if p.kind == "catalog" and p.collection}
    if any(p.kind == "catalog" and p.collection is None and p.detail.startswith(_ALIASES) for p in before.problems):
        catalog.replace_aliases(expected.state.aliases)
    for coll_name in sorted(damaged):
        catalog.replace_collection(coll_name, expected.mirror.collections.get(coll_name),
                                   list(expected.mirror.points.get(coll_name, {}).values()))
    if any(p.kind in ("snapshot", "index", "recall") for p in before.problems):
        for path in snapshots.list_snapshots(settings.snapshot_dir):
            if snapshots.verify(path, keys=keys, authenticate=True):
                shutil.rmtree(path)
        snapshots.write_snapshot(expected.state, position, settings.snapshot_dir, settings.topic,
                                 settings.snapshots_keep, keys=keys)
