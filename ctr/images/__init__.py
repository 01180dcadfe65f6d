"""Images: what an instance's root filesystem is made from, kept under STATE_ROOT/images.

Three things are called "images" in ctr; this package is the store. The
recipes (shell scripts that build a rootfs: the repo's top-level images/
folder, installed as the package ctr.recipes) and the verbs (`ctr image ...`,
ctr/cli/images.py) are the other two.

Today:
  store.py    ImageStore: an image is images/NAME/rootfs (one flat, read-only
              lower layer) and images/NAME/image.json; build, import (a rootfs
              tarball), get, list, remove.
  recipe.py   finding a recipe and running it in a sandbox of its own.
  layers.py   unpack(): one OCI layer (a tar stream) into a folder of its own,
              safely (every write relative to a directory fd, O_NOFOLLOW),
              with its diff ID checked.
  config.py   the image's config (record["config"], OCI form, or the flat
              cmd/env/workdir of today's records) as run defaults: ImageConfig,
              typed values for ctr.spec.new_spec, checked as hostile input.

Where OCI images go (issue 15):
  layers.py   the layer store on top of unpack(), content-addressed: each layer unpacked once, into
              a folder of its own keyed by its digest (sha256:HEX) and shared by
              every image that has it; whiteouts and opaque directories become
              overlayfs's own; no member ever lands outside its layer's folder.
              An instance's root is the overlay of its image's layers (lower
              dirs) and its own upper: never flattened.
  store.py    image records (name, tag, digest) point at their layers, by
              digest, and at their config. Today's images (recipes, rootfs
              imports) become one-layer images; a state root made by today's
              ctr keeps working (migrated on first use if need be).
  pull.py     references as docker normalizes them, platforms, skopeo as the
              transport.
  archive.py  import and save: OCI layouts, OCI and docker archives, rootfs
              tarballs.
"""
