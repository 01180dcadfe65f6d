"""Images: what an instance's root filesystem is made from, kept under STATE_ROOT/images.

Three things are called "images" in ctr; this package is the store. The
recipes (shell scripts that build a rootfs: the repo's top-level images/
folder, installed as the package ctr.recipes) and the verbs (`ctr image ...`,
ctr/cli/images.py) are the other two.

The modules:
  store.py      ImageStore: image records (a plain name or a normalized reference),
                resolving what `ctr run X` means, the lowerdirs of an image, first
                use (local, recipe, or pull) under a lock per name, tag, rm, prune.
  layerstore.py the layer store: each layer unpacked once into layers/<algo>/<hex>,
                keyed by its diff ID, under a lock of its own, shared by every image
                that has it; short l/ names; collecting what nothing uses.
  layers.py     unpack(): one OCI layer (a tar stream) into a folder of its own,
                safely (every write relative to a directory fd, O_NOFOLLOW),
                whiteouts as overlayfs's own, its diff ID checked.
  pull.py       skopeo as the transport (an OCI layout, blobs shared in
                STATE_ROOT/blobs), the manifest and config read and checked.
  reference.py  references as docker normalizes them; platforms.
  local.py      recipe builds and rootfs imports: one-layer images in images/NAME/rootfs.
  recipe.py     finding a recipe and running it in a sandbox of its own.
  config.py     the image's config (record["config"], OCI form, or the flat
                cmd/env/workdir of local images) as run defaults: ImageConfig,
                typed values for ctr.spec.new_spec, checked as hostile input.

  archive.py    import (OCI layout, OCI archive, docker archive, rootfs tarball) and
                save (docker-archive, oci-archive), read and written in place.
  treetar.py    folders back into tar streams: a layer with OCI whiteouts, or the
                union of an instance's layers.
  commit.py     an instance's upper directory as a new layer and image (commit);
                its whole root as one tar (export).
"""
