"""The ADS state machine: versions, nonces, ACK/NACK per type, resends only on change.

`AdsStream` is driven directly; the async servicer is driven with a fake stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

from extproc.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, build_resources
from extproc.xds.server import AdsServicer
from extproc.xds.stream import AdsStream

from .builders import discovery_request, make_config, served_cache


def _names(resp: DiscoveryResponse) -> list[str]:
    return [r.unpack().cluster_name if resp.type_url == ENDPOINT_TYPE else r.unpack().name  # type: ignore[union-attr]
            for r in resp.resources]  # fmt: skip


def test_initial_request_gets_current_version_and_ack_gets_nothing() -> None:
    cache = served_cache(maxParallelRequests=1)
    stream = AdsStream(cache)
    (resp,) = stream.on_request(discovery_request())
    assert resp.version_info == cache.versions()[CLUSTER_TYPE]
    assert resp.nonce and resp.type_url == CLUSTER_TYPE
    assert _names(resp) == ["inference-pool"]
    assert stream.on_request(discovery_request(version=resp.version_info, nonce=resp.nonce)) == []
    assert stream.types[CLUSTER_TYPE].acked_version == resp.version_info
    assert stream.node_id == "envoy-1"


def test_change_is_pushed_with_new_version_and_nonce() -> None:
    cache = served_cache(maxParallelRequests=1)
    stream = AdsStream(cache)
    (first,) = stream.on_request(discovery_request())
    stream.on_request(discovery_request(version=first.version_info, nonce=first.nonce))
    changed = cache.update(
        build_resources(make_config("10.0.0.1:8000", maxParallelRequests=3), "pool")
    )
    assert changed == [CLUSTER_TYPE]
    (second,) = stream.on_change(changed)
    assert second.version_info != first.version_info
    assert second.nonce != first.nonce
    # The same content again is no change at all.
    assert (
        cache.update(build_resources(make_config("10.0.0.1:8000", maxParallelRequests=3), "pool"))
        == []
    )
    assert stream.on_change([CLUSTER_TYPE]) == []


def test_nack_is_logged_and_the_rejected_version_is_not_resent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = served_cache(maxParallelRequests=1)
    stream = AdsStream(cache)
    (good,) = stream.on_request(discovery_request())
    stream.on_request(discovery_request(version=good.version_info, nonce=good.nonce))
    cache.update(build_resources(make_config("10.0.0.1:8000", maxParallelRequests=5), "pool"))
    (bad,) = stream.on_change([CLUSTER_TYPE])
    with caplog.at_level(logging.WARNING, logger="extproc.xds.stream"):
        out = stream.on_request(
            discovery_request(
                version=good.version_info,
                nonce=bad.nonce,
                error="Proto constraint validation failed",
            )
        )
    assert out == []
    state = stream.types[CLUSTER_TYPE]
    assert state.rejected_version == bad.version_info
    assert state.acked_version == good.version_info
    (record,) = [r for r in caplog.records if r.getMessage() == "update_rejected"]
    fields = record.kv  # type: ignore[attr-defined]
    assert fields["error"] == "Proto constraint validation failed"
    assert fields["kept_version"] == good.version_info
    # No change: nothing is sent again (no NACK loop).
    assert stream.on_change([CLUSTER_TYPE]) == []
    # The next real change goes out.
    cache.update(build_resources(make_config("10.0.0.1:8000", maxParallelRequests=6), "pool"))
    (fixed,) = stream.on_change([CLUSTER_TYPE])
    assert fixed.version_info not in (good.version_info, bad.version_info)


def test_stale_nonce_is_ignored() -> None:
    cache = served_cache(maxParallelRequests=1)
    stream = AdsStream(cache)
    (first,) = stream.on_request(discovery_request())
    cache.update(build_resources(make_config("10.0.0.1:8000", maxParallelRequests=2), "pool"))
    (second,) = stream.on_change([CLUSTER_TYPE])
    # Envoy's ACK of the first response arrives after we sent the second.
    assert stream.on_request(discovery_request(version=first.version_info, nonce=first.nonce)) == []
    assert stream.types[CLUSTER_TYPE].acked_version == ""
    assert (
        stream.on_request(discovery_request(version=second.version_info, nonce=second.nonce)) == []
    )
    assert stream.types[CLUSTER_TYPE].acked_version == second.version_info


def test_types_are_independent_and_eds_sends_only_subscribed_names() -> None:
    cache = served_cache("fail-open")
    stream = AdsStream(cache)
    (cds,) = stream.on_request(discovery_request(CLUSTER_TYPE))
    (eds,) = stream.on_request(discovery_request(ENDPOINT_TYPE, names=("inference-pool",)))
    assert _names(eds) == ["inference-pool"]
    # ACK both; NACK state of one type does not touch the other.
    stream.on_request(
        discovery_request(CLUSTER_TYPE, version=cds.version_info, nonce=cds.nonce, error="bad")
    )
    stream.on_request(
        discovery_request(
            ENDPOINT_TYPE, version=eds.version_info, nonce=eds.nonce, names=("inference-pool",)
        )
    )
    assert stream.types[CLUSTER_TYPE].rejected_version == cds.version_info
    assert stream.types[ENDPOINT_TYPE].acked_version == eds.version_info
    # Endpoints change, clusters do not: only EDS is resent.
    changed = cache.update(build_resources(make_config("10.0.0.1:8000"), "fail-open"))
    assert changed == [ENDPOINT_TYPE]
    (resp,) = stream.on_change(changed)
    assert resp.type_url == ENDPOINT_TYPE
    # A subscription to an unknown name gets an empty answer, not the other resources.
    (none,) = stream.on_request(
        discovery_request(
            ENDPOINT_TYPE, version=resp.version_info, nonce=resp.nonce, names=("other",)
        )
    )
    assert none.resources == []


def test_reconnect_with_a_known_version_is_answered() -> None:
    # After a server restart Envoy sends its last version with no nonce: answer it (same
    # content hashes to the same version, so Envoy sees nothing new).
    cache = served_cache(maxParallelRequests=1)
    version = cache.versions()[CLUSTER_TYPE]
    (resp,) = AdsStream(cache).on_request(discovery_request(version=version))
    assert resp.version_info == version


def test_unsubscribed_type_is_not_pushed() -> None:
    cache = served_cache("fail-open")
    stream = AdsStream(cache)
    stream.on_request(discovery_request(CLUSTER_TYPE))
    changed = cache.update(build_resources(make_config("10.0.0.9:8000"), "fail-open"))
    assert [r.type_url for r in stream.on_change(changed)] == []  # EDS never requested


async def test_servicer_over_a_fake_stream() -> None:
    cache = served_cache(maxParallelRequests=1)
    servicer = AdsServicer(cache)
    inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
    sent: list[DiscoveryResponse] = []
    got = asyncio.Event()

    async def requests() -> AsyncIterator[bytes]:
        while (item := await inbox.get()) is not None:
            yield item

    async def send(data: bytes) -> None:
        sent.append(DiscoveryResponse.parse(data))
        got.set()

    async def next_response() -> DiscoveryResponse:
        await asyncio.wait_for(got.wait(), 2)
        got.clear()
        return sent[-1]

    task = asyncio.create_task(servicer.stream(requests(), send))
    inbox.put_nowait(bytes(discovery_request()))
    first = await next_response()
    inbox.put_nowait(bytes(discovery_request(version=first.version_info, nonce=first.nonce)))
    await asyncio.sleep(0.05)
    assert len(sent) == 1  # the ACK is not answered
    cache.update(build_resources(make_config("10.0.0.1:8000", maxParallelRequests=4), "pool"))
    second = await next_response()
    assert second.version_info != first.version_info
    assert servicer.open_streams == 1
    inbox.put_nowait(None)  # Envoy closes the stream
    await asyncio.wait_for(task, 2)
    assert servicer.open_streams == 0
    # A closed stream no longer listens to the cache.
    cache.update(build_resources(make_config("10.0.0.1:8000", maxParallelRequests=5), "pool"))
    assert len(sent) == 2


def test_repeated_acked_nonce_is_a_resubscription_and_is_answered_once() -> None:
    # A CDS update sends the EDS cluster back to warming; Envoy asks for its endpoints again
    # with the nonce it already ACKed and waits for an answer.
    cache = served_cache("fail-open")
    stream = AdsStream(cache)
    names = ("inference-pool",)
    (eds,) = stream.on_request(discovery_request(ENDPOINT_TYPE, names=names))
    ack = discovery_request(ENDPOINT_TYPE, version=eds.version_info, nonce=eds.nonce, names=names)
    assert stream.on_request(ack) == []
    (again,) = stream.on_request(ack)
    assert again.version_info == eds.version_info and again.nonce != eds.nonce
    assert (
        stream.on_request(
            discovery_request(
                ENDPOINT_TYPE, version=again.version_info, nonce=again.nonce, names=names
            )
        )
        == []
    )
