"""--userns=auto's shifted copies in the layer store: the id rule, and which
copies a collection keeps (no root needed: plain folders)."""

import os

from ctr.images.layerstore import LayerStore
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


def make(store, layer_id, *entries):
    for e in entries:
        os.makedirs(os.path.join(store.shifted_dir(layer_id), e, "etc"))


def test_collect_keeps_the_copies_of_used_layers_and_held_blocks(tmp_path):
    store = LayerStore(str(tmp_path))
    store.ensure()
    make(store, A, "1-1-65536", "2-2-65536", "1-1-65536.tmp-123", "3-3-65536.tmp-rm")
    make(store, B, "1-1-65536")
    store.collect_shifted(used={A}, held={"1-1-65536"})
    assert os.listdir(store.shifted_dir(A)) == ["1-1-65536"]
    assert not os.path.exists(os.path.dirname(store.shifted_dir(B)) + "/" + "b" * 64)
    store.collect_shifted(used=set(), held={"1-1-65536"})
    assert not os.path.exists(os.path.join(store.dir, "shifted"))


def test_collect_skips_a_layer_whose_copy_is_being_made(tmp_path):
    store = LayerStore(str(tmp_path))
    store.ensure()
    make(store, A, "1-1-65536.tmp-9")
    with store.lock(A):
        store.collect_shifted(used=set(), held=set())
    assert os.listdir(store.shifted_dir(A)) == ["1-1-65536.tmp-9"]
