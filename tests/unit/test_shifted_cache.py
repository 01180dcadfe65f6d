"""--userns=auto's shifted copies in the layer store: the id rule, which
copies a collection keeps, what it frees and what `system df` shows of them
(no root needed: plain folders)."""

import os

from ctr.images.layerstore import LayerStore, kept
from ctr.query import shifted_usage
from ctr.store import du
from ctr.userns import OVERFLOW, SIZE, _shift, shifted_key

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_ids_move_into_the_block_and_the_rest_become_its_nobody():
    assert _shift(0, 1000000) == 1000000
    assert _shift(SIZE - 1, 1000000) == 1000000 + SIZE - 1
    assert _shift(SIZE, 1000000) == _shift(4000000000, 1000000) == 1000000 + OVERFLOW == 1065534


def test_a_key_names_the_whole_mapping():
    assert shifted_key({"uid": 5, "gid": 7, "size": 65536}) == "5-7-65536"
    assert shifted_key({"uid": 5, "gid": 7}) == "5-7-65536"


def make(store, layer_id, *entries, data=b""):
    for e in entries:
        os.makedirs(os.path.join(store.shifted_dir(layer_id), e, "etc"))
        if data:
            with open(os.path.join(store.shifted_dir(layer_id), e, "etc", "f"), "wb") as f:
                f.write(data)
            os.sync()  # st_blocks of data written this moment may still read 0


def test_collect_keeps_the_copies_of_used_layers_and_held_blocks(tmp_path):
    store = LayerStore(str(tmp_path))
    store.ensure()
    make(store, A, "1-1-65536", "2-2-65536", "1-1-65536.tmp-123", "3-3-65536.tmp-rm")
    make(store, B, "1-1-65536")
    removed, _ = store.collect_shifted(used={A}, held={"1-1-65536"})
    assert sorted((lid, key) for lid, key, _ in removed) == [(A, "2-2-65536"),
                                                             (B, "1-1-65536")]
    assert os.listdir(store.shifted_dir(A)) == ["1-1-65536"]
    assert not os.path.exists(os.path.dirname(store.shifted_dir(B)) + "/" + "b" * 64)
    removed, _ = store.collect_shifted(used=set(), held={"1-1-65536"})
    assert [(lid, key) for lid, key, _ in removed] == [(A, "1-1-65536")]
    assert not os.path.exists(os.path.join(store.dir, "shifted"))


def test_collect_skips_a_layer_whose_copy_is_being_made(tmp_path):
    store = LayerStore(str(tmp_path))
    store.ensure()
    make(store, A, "1-1-65536.tmp-9")
    with store.lock(A):
        store.collect_shifted(used=set(), held=set())
    assert os.listdir(store.shifted_dir(A)) == ["1-1-65536.tmp-9"]


def test_kept_needs_an_image_with_the_layer_and_an_instance_with_the_block():
    assert kept(A, "1-1-65536", used={A}, held={"1-1-65536"})
    assert not kept(A, "1-1-65536", used={B}, held={"1-1-65536"})
    assert not kept(A, "1-1-65536", used={A}, held={"2-2-65536"})
    assert not kept(A, "1-1-65536.tmp-9", used={A}, held={"1-1-65536"})


def test_collect_counts_what_it_frees_by_the_blocks_on_disk(tmp_path):
    store = LayerStore(str(tmp_path))
    store.ensure()
    make(store, A, "1-1-65536", "2-2-65536", data=b"x" * 100000)
    make(store, A, "3-3-65536.tmp-123", data=b"y" * 50000)
    one = du(store.shifted_dir(A) + "/2-2-65536")
    left = du(store.shifted_dir(A) + "/3-3-65536.tmp-123")
    assert one >= 100000 and left >= 50000
    removed, freed = store.collect_shifted(used={A}, held={"1-1-65536"})
    assert removed == [(A, "2-2-65536", one)] and freed == one + left


def test_shifted_copies_lists_copies_leftovers_and_strays(tmp_path):
    store = LayerStore(str(tmp_path))
    store.ensure()
    make(store, A, "1-1-65536", "2-2-65536.tmp-7")
    os.makedirs(os.path.join(store.dir, "shifted", "sha256", "NOT-HEX"))
    got = sorted(store.shifted_copies(), key=str)
    assert [(lid, e) for lid, e, _ in got] == [
        (A, "1-1-65536"), (A, "2-2-65536.tmp-7"), (None, "NOT-HEX")]
    assert got[0][2] == os.path.join(store.shifted_dir(A), "1-1-65536")
    assert LayerStore(str(tmp_path / "none")).shifted_copies() == []


def test_df_row_active_is_what_prune_keeps_and_the_rest_reclaimable(tmp_path):
    store = LayerStore(str(tmp_path))
    store.ensure()
    make(store, A, "1-1-65536", "2-2-65536", data=b"x" * 100000)
    make(store, B, "1-1-65536", data=b"x" * 100000)
    make(store, A, "3-3-65536.tmp-123", data=b"y" * 50000)
    sizes = {(lid, e): du(p) for lid, e, p in store.shifted_copies()}
    row = shifted_usage(store, used={A}, held={"1-1-65536"})
    assert row == {"type": "Shifted layers", "total": 3, "active": 1,
                   "size": sum(sizes.values()),
                   "reclaimable": sum(sizes.values()) - sizes[(A, "1-1-65536")]}
    # and that is what a collection frees
    _, freed = store.collect_shifted(used={A}, held={"1-1-65536"})
    assert freed == row["reclaimable"]
    assert shifted_usage(store, used={A}, held={"1-1-65536"})["reclaimable"] == 0
    assert shifted_usage(LayerStore(str(tmp_path / "none")), set(), set()) == {
        "type": "Shifted layers", "total": 0, "active": 0, "size": 0, "reclaimable": 0}
