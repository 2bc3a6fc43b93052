"""Weighted rendezvous hashing with a cap, on plain lists (no Redis): who should own each camera."""

from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cluster.rendezvous import Member, assign, moved, scores

CAMS = [f"cam-{i:04d}" for i in range(2000)]
worker_ids = st.lists(st.text("abcdefghij0123456789-", min_size=1, max_size=8), min_size=1, max_size=12,
                      unique=True)


@settings(max_examples=40, deadline=None)
@given(worker_ids, st.text("abcdefghij0123456789-", min_size=1, max_size=8), st.integers(50, 600))
def test_a_joining_worker_takes_only_cameras_it_now_owns_and_about_one_nth(ids: list[str], new: str, n: int) -> None:
    if new in ids:
        return
    cams = CAMS[:n]
    before = assign(cams, [Member(i) for i in ids]).owner
    after = assign(cams, [Member(i) for i in ids + [new]]).owner
    changed = moved(before, after)
    assert all(after[c] == new for c in changed), "a join moved a camera between two old workers"
    share = len(changed) / n
    expect = 1 / (len(ids) + 1)
    # binomial spread: within 5 standard deviations (+1 camera) of capacity / total capacity
    sd = (expect * (1 - expect) / n) ** 0.5
    assert abs(share - expect) <= 5 * sd + 1 / n, (share, expect)


@settings(max_examples=40, deadline=None)
@given(worker_ids.filter(lambda ids: len(ids) >= 2), st.data())
def test_a_leaving_worker_moves_only_its_own_cameras(ids: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(ids))
    cams = CAMS[:400]
    before = assign(cams, [Member(i) for i in ids]).owner
    after = assign(cams, [Member(i) for i in ids if i != gone]).owner
    assert set(moved(before, after)) == {c for c, w in before.items() if w == gone}
    assert gone not in after.values()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.5, 8.0), min_size=2, max_size=6))
def test_shares_follow_capacity(capacities: list[float]) -> None:
    members = [Member(f"w{i}", c) for i, c in enumerate(capacities)]
    owner = assign(CAMS, members).owner
    counts = collections.Counter(owner.values())
    total = sum(capacities)
    for m in members:
        expect = m.capacity / total
        sd = (expect * (1 - expect) / len(CAMS)) ** 0.5
        assert abs(counts[m.id] / len(CAMS) - expect) <= 5 * sd + 0.002, (m, counts[m.id], expect)


@settings(max_examples=40, deadline=None)
@given(worker_ids, st.lists(st.integers(0, 300) | st.none(), min_size=12, max_size=12), st.integers(1, 800))
def test_a_cap_is_never_exceeded_and_nothing_is_left_while_room_remains(ids: list[str], caps: list[int | None],
                                                                       n: int) -> None:
    members = [Member(i, 1.0, caps[k]) for k, i in enumerate(ids)]
    owner = assign(CAMS[:n], members).owner
    counts = collections.Counter(w for w in owner.values() if w is not None)
    for m in members:
        if m.max_cameras is not None:
            assert counts[m.id] <= m.max_cameras
    room = sum(m.max_cameras if m.max_cameras is not None else n for m in members)
    unassigned = sum(1 for w in owner.values() if w is None)
    assert unassigned == max(0, n - room)


def test_without_caps_the_owner_is_the_highest_score_and_order_of_inputs_does_not_matter() -> None:
    members = [Member("b", 2.0), Member("a", 1.0), Member("c", 1.0)]
    a1 = assign(CAMS[:300], members)
    a2 = assign(list(reversed(CAMS[:300])), list(reversed(members)))
    assert a1.owner == a2.owner
    sc = scores(a1.cameras, a1.members)
    for i, cam in enumerate(a1.cameras):
        assert a1.owner[cam] == a1.members[int(sc[i].argmax())].id
        assert a1.rank(cam, a1.owner[cam] or "") == 0
