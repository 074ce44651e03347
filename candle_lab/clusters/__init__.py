"""Clusters from site profiles: where the engine's dask client comes from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from candle_lab.clusters.profiles import SiteProfile, available_profiles, load_profile
from candle_lab.errors import SpecError
from candle_lab.spec import ComputeSpec

__all__ = ["SiteProfile", "available_profiles", "load_profile", "open_client"]


@contextlib.contextmanager
def open_client(compute: ComputeSpec) -> Iterator[Any]:
    """A dask client on the cluster the ``compute`` section asks for; closed afterwards."""
    profile = load_profile(compute.profile)
    if profile.scheduler != "local":
        raise SpecError.one(
            "compute.profile", f"expected a profile this version can start ('local'), got {profile.name!r}"
        )
    from candle_lab.clusters.local import start_local

    cluster, client = start_local(compute)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
