"""The image store's records and lowerdirs, without root: a state root in a
temporary folder with records and layer folders written by hand."""

import hashlib
import os

import pytest

from ctr.errors import CtrError, NotFound
from ctr.images.store import MAX_LAYERS, ImageStore
from ctr.store import Store, atomic_write_json


def store_with(tmp_path, n, name="example.com/x/many:v1"):
    images = ImageStore(Store(str(tmp_path / ("r" * 100))).ensure())
    ids = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    for lid in ids:
        os.makedirs(images.layers.path(lid))
    images.layers.ensure()
    for lid in ids:
        images.layers._finish(lid, 1)
    images._write(name, {"id": "sha256:" + "f" * 64, "layers": ids, "size": n})
    return images, ids, name


def test_a_few_layers_are_full_paths_top_first(tmp_path):
    images, ids, name = store_with(tmp_path, 3)
    lower = images.lowerdir(name)
    assert lower.split(":") == [images.layers.path(i) for i in reversed(ids)]


def test_many_layers_become_short_relative_names(tmp_path):
    images, ids, name = store_with(tmp_path, 150)
    base, rel = images.lowerdir(name, reserve=300)
    assert base == images.layers.dir
    first = rel.split(":")[0]
    assert first == "l/" + ids[-1][7:][:16]
    assert os.path.realpath(os.path.join(base, first)) == images.layers.path(ids[-1])


def test_past_a_page_even_short_is_refused(tmp_path):
    images, _, name = store_with(tmp_path, 210)
    with pytest.raises(CtrError, match="even their short names do not fit"):
        images.lowerdir(name, reserve=300)


def test_too_many_layers_are_refused(tmp_path):
    images, _, name = store_with(tmp_path, MAX_LAYERS + 1)
    with pytest.raises(CtrError, match="overlayfs stacks at most"):
        images.lowerdir(name)


def test_a_missing_layer_is_named(tmp_path):
    images, ids, name = store_with(tmp_path, 2)
    os.rmdir(images.layers.path(ids[0]))
    with pytest.raises(NotFound, match="incomplete"):
        images.lowerdir(name)


def test_names_resolve_as_docker_normalizes_them(tmp_path):
    images, _, _ = store_with(tmp_path, 1, name="docker.io/library/alpine:latest")
    assert images.find("alpine") == "docker.io/library/alpine:latest"
    assert images.find("docker.io/library/alpine") == "docker.io/library/alpine:latest"
    assert images.find("alpine:3") is None
    atomic_write_json(os.path.join(images.dir, "nothing"), {})  # a stray file is skipped
    assert [i["name"] for i in images.list()] == ["docker.io/library/alpine:latest"]


def test_collect_reports_layers_shifted_copies_blobs_and_the_bytes_freed(tmp_path):
    from ctr.store import du

    images, ids, name = store_with(tmp_path, 2)
    copy = os.path.join(images.layers.shifted_dir(ids[0]), "1-1-65536")
    os.makedirs(copy)
    with open(os.path.join(copy, "f"), "wb") as f:
        f.write(b"x" * 100000)
    blob = os.path.join(images.blobs, "sha256", "c" * 64)
    os.makedirs(os.path.dirname(blob))
    with open(blob, "wb") as f:
        f.write(b"b" * 20000)
    os.sync()
    copy_size, blob_size = du(copy), os.lstat(blob).st_blocks * 512
    # the image has both layers; no instance holds the block: the copy goes
    got = images.collect()
    assert got == {"layers": [], "blobs": 1,
                   "shifted": [{"layer": ids[0], "block": "1-1-65536", "size": copy_size}],
                   "reclaimed": copy_size + blob_size}
    assert copy_size >= 100000 and blob_size >= 20000
    assert not os.path.exists(os.path.join(images.layers.dir, "shifted"))
    with open(os.path.join(images.layers.path(ids[1]), "g"), "wb") as f:
        f.write(b"y" * 30000)
    os.sync()
    images.remove(name, collect=False)
    assert sorted(images.layers.ids()) == sorted(ids)  # left for the caller's collect
    got = images.collect()
    assert sorted(got["layers"]) == sorted(ids) and got["shifted"] == [] and got["blobs"] == 0
    assert got["reclaimed"] >= 30000 and images.layers.ids() == []
    assert images.collect() == {"layers": [], "blobs": 0, "shifted": [], "reclaimed": 0}
