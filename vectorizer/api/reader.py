"""The one interface through which the HTTP layer reads the projection.

Routes parse, call and render: they never touch the projector's maps, its locks or its
threads. ``consumers.projector.Projector`` implements this; a test or another engine can too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from consumers.projector import ProjectorStats
from infra.settings import Settings
from projections.changes import Rejection
from projections.collection import Collection


class ProjectionReader(Protocol):
    """All the HTTP layer reads of the projection (``consumers.projector.Projector`` is one)."""

    settings: Settings
    stats: ProjectorStats
    log_problem: str | None

    def serving(self) -> bool: ...
    def positions(self) -> dict[int, int]: ...
    def partitions(self) -> list[int]: ...
    def log_tag(self) -> str | None: ...
    def collection(self, name: str) -> Collection | None: ...
    def collections(self) -> dict[str, Collection]: ...
    def lag(self) -> dict[int, int]: ...
    def wait_for(self, partition: int, offset: int, timeout: float | None) -> None: ...
    def verdict(self, partition: int, offsets: Iterable[int]) -> list[Rejection]: ...
    def request_snapshot(self, timeout: float) -> str | None: ...
