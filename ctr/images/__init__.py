"""The image store: OCI layers, unpacked one directory each (layers.py)."""
