"""Corpus tokenization for speech language models: sharded, resumable, multi-worker.

    from audiotok.tokenize import TokenizeOptions, tokenize, read_index, read_records
    index = tokenize(TokenizeOptions("corpus/", Path("tokens"), codec=codec.ref), codec)
    for rec in read_records("tokens", read_index("tokens")):
        rec.id, rec.codes            # codes uint16 [K, T]
"""

from .run import TokenizeOptions, tokenize
from .state import read_index
from .writers import FORMATS, Record, read_records

__all__ = ["FORMATS", "Record", "TokenizeOptions", "read_index", "read_records", "tokenize"]
