"""The only package that imports `telegram`: handlers, rendering, the local Bot API emulator."""
