"""AEGIS: an AI trading desk as a tree of supervised pykka actors."""

__version__ = "0.1.0"
