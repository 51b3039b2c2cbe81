"""The on-disk index: the one package that opens its files.

    layout          the files of an index directory, by name
    migrations      the catalog's format versions and the in-place upgrades between them
    catalog         the owner of rows and SQL: what is indexed, settings (meta), runs, failures; the tables' readers
    stored_vectors  the one reader of stored vectors (segments, or old catalogs' blobs): by id, by path, in blocks
    segments        the owner of the vector files: layout, checksums, append, compaction
    index_files     the owner of the derived index files: type, build, patch, delta, retrain, read for queries
    embedding_model the rule that an index's vectors are of one model, and the re-embedding that swaps them
    reader          read-only access for searches (committed states only): holds a catalog, vectors, index files
    writer          the one writer: lock, runs, puts, commits, sweeps; the same parts, written in one transaction
    lock            the write lock (flock), dropped by forked children
    vector_index    the FAISS side: index type by size and budget, build, patch, write, read
    large_index     the index for 100M vectors: trained lists, a memory-mapped base, a delta per generation
    thumbnails      the web page's thumbnail cache
    check           diagnosis (consistency and checksums) and repair
    file_sums       checksums of the derived index files
    salvage         what can still be read from a damaged catalog, for ``check --repair``

Importing it is cheap (sqlite3 only): numpy and faiss come with the calls that need them.
"""

from clipsearch.store.catalog import FileRecord, IndexedFile, ModelRecord
from clipsearch.store.check import check as check_index
from clipsearch.store.layout import CATALOG_NAME, index_exists
from clipsearch.store.migrations import CURRENT as FORMAT_VERSION
from clipsearch.store.reader import StoreReader
from clipsearch.store.writer import StoreWriter

__all__ = ["CATALOG_NAME", "FORMAT_VERSION", "FileRecord", "IndexedFile", "ModelRecord", "StoreReader", "StoreWriter",
           "check_index", "index_exists"]
