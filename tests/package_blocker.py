"""Python source that makes `import brain_jepa_hf` fail, prepended to scripts run in a subprocess, so
only files saved next to the weights (or downloaded from a Hub) can provide the model."""

import textwrap


BLOCK_PACKAGE = textwrap.dedent("""
    import sys
    class _BlockBrainJepaHf:
        def find_spec(self, name, path=None, target=None):
            if name == "brain_jepa_hf" or name.startswith("brain_jepa_hf."):
                raise ImportError(f"{name} is blocked in this process")
            return None
    sys.meta_path.insert(0, _BlockBrainJepaHf())
    try:
        import brain_jepa_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("brain_jepa_hf is importable: the remote-code check would prove nothing")
""")
