# Type stubs of the compiled extension tmfast._rust. Use the typed wrappers in
# tmfast.geometry, tmfast.extraction and tmfast.io instead of calling these directly.
__version__: str
