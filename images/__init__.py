"""ctr's own image recipes, installed as the package ctr.recipes: NAME/build.sh
ROOTFS builds image NAME's root filesystem (run by ctr.images.recipe)."""
