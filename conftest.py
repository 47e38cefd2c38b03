"""Thin on purpose: the opsproof plugin (src/opsproof/plugin.py) is loaded through its pytest11 entry point."""
