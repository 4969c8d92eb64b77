"""A tiny stand-in for a user's installed package, for the factory and entry-point tests.

``models`` holds a small model and factories (importing it registers nothing); ``plugin``
registers a backbone and its hook spec when imported (an entry point's module form) and one more
in :func:`plugin.register` (the function form); ``broken`` fails on import.
"""
