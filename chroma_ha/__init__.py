"""chroma-ha: one highly available Chroma made of several ordinary Chroma servers."""

__version__ = "0.1.0"
