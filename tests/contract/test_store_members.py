"""The store contract for the members, by behaviour, on every backend: the list is seeded once, each change raises
the version, a change that changes nothing raises nothing, and removing a member forgets all the store holds for it
(so it holds back neither pruning nor health). Several gateways on one store see the same list and version.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from chroma_ha.store.base import ACTIVE, DRAINING, JOINING, Applied, IdMapping, LogStore
from tests.contract.test_store import new_entry

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

A, B, C = "http://a:8000", "http://b:8000", "http://c:8000"


def states(roster_members: tuple[object, ...]) -> list[tuple[str, str]]:
    return [(m.url, m.state) for m in roster_members]  # type: ignore[attr-defined]


async def test_an_empty_store_has_no_members_and_version_0(store: LogStore) -> None:
    roster = await store.members()
    assert (roster.version, roster.members) == (0, ())
    assert await store.members_version() == 0


async def test_the_list_is_seeded_once_as_active_in_the_given_order(store: LogStore) -> None:
    assert await store.seed_members([B, A])
    roster = await store.members()
    assert states(roster.members) == [(B, ACTIVE), (A, ACTIVE)]
    assert roster.version == await store.members_version() > 0
    assert not await store.seed_members([C])
    assert (await store.members()).urls == (B, A)


async def test_a_seed_after_every_member_was_removed_seeds_nothing(store: LogStore) -> None:
    await store.seed_members([A])
    await store.set_member_state(A, DRAINING, ACTIVE)
    await store.remove_member(A)
    assert not await store.seed_members([A, B])
    assert (await store.members()).members == ()


async def test_each_change_raises_the_version_and_a_change_of_nothing_does_not(store: LogStore) -> None:
    await store.seed_members([A])
    seen = [await store.members_version()]

    assert await store.add_member(C, JOINING)
    seen.append(await store.members_version())
    assert not await store.add_member(C, JOINING)
    assert not await store.add_member(A, JOINING)
    assert await store.members_version() == seen[-1]

    assert await store.set_member_state(C, ACTIVE, JOINING)
    seen.append(await store.members_version())
    assert not await store.set_member_state(C, ACTIVE, JOINING)  # not joining any more
    assert not await store.set_member_state(B, ACTIVE, JOINING)  # not a member
    assert await store.members_version() == seen[-1]

    assert await store.remove_member(C)
    seen.append(await store.members_version())
    assert not await store.remove_member(C)
    assert await store.members_version() == seen[-1]
    assert seen == sorted(set(seen))
    roster = await store.members()
    assert states(roster.members) == [(A, ACTIVE)]
    assert roster.version == seen[-1]


async def test_an_added_member_comes_last_and_its_state_change_is_stamped(store: LogStore) -> None:
    await store.seed_members([A, B])
    await store.add_member(C, JOINING)
    before = {m.url: m.changed_at for m in (await store.members()).members}
    await asyncio.sleep(0.01)
    await store.set_member_state(C, ACTIVE, JOINING)
    after = {m.url: m for m in (await store.members()).members}
    assert list(after) == [A, B, C]
    assert after[C].state == ACTIVE and after[C].changed_at > before[C]
    assert after[A].changed_at == before[A]


async def test_removing_a_member_forgets_its_cursor_ids_intents_lease_plan_and_divergences(store: LogStore) -> None:
    await store.seed_members([A, B])
    await store.append([new_entry(1)])
    for instance, status in ((A, 200), (B, 400)):
        await store.commit_batch(
            instance, [Applied(1, status, b"{}")], 1, [IdMapping(instance, "canon", f"{instance}-1")]
        )
    await store.record_intent(B, 1)
    assert await store.acquire_lease(B, "gateway-1", 30)
    await store.save_bootstrap_pages(B, [(0, b"plan")])
    assert [d.instance for d in await store.divergences()] == [B]
    catalog = await store.catalog_version()

    assert await store.remove_member(B)

    assert set(await store.cursors()) == {A}
    assert [m.instance for m in await store.mappings()] == [A]
    assert not await store.has_intent(B, 1)
    assert await store.bootstrap_pages(B, 0, 10) == []
    assert await store.divergences() == []
    assert await store.catalog_version() > catalog
    assert await store.acquire_lease(B, "gateway-2", 30)  # nobody holds it any more


async def test_a_reset_keeps_the_members(store: LogStore) -> None:
    await store.seed_members([A, B])
    await store.reset()
    assert (await store.members()).urls == (A, B)


async def test_every_store_on_one_database_sees_the_same_members(backend: Backend) -> None:
    first, second = await backend.open_store(), await backend.open_store()
    seeded = await asyncio.gather(first.seed_members([A, B]), second.seed_members([B, C]))
    assert sorted(seeded) == [False, True]
    assert await first.members() == await second.members()
    await first.add_member(C if (await first.members()).urls == (A, B) else A, JOINING)
    assert await second.members() == await first.members()
    assert await second.members_version() == await first.members_version()


async def test_the_members_survive_closing_and_reopening(backend: Backend) -> None:
    store = await backend.open_store()
    await store.seed_members([A])
    await store.add_member(B, JOINING)
    roster = await store.members()
    if backend.name != "memory":
        await backend.close_store(store)
    again = await backend.open_store()
    assert await again.members() == roster
