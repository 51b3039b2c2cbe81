"""The model an index's vectors are of: the one owner of the rule that every vector searches use comes from one model,
and of a re-embedding (``index --reindex``) that replaces them all at once.

Invariants:
- ``meta.model_spec``/``model_fingerprint``/``dim`` describe every row of ``vectors``;
- while a re-embedding is under way, ``meta.next_model_*`` describe every row of ``vectors_next``, and searches go
  on using ``vectors`` in full; ``swap`` replaces one by the other in the writer's open transaction, never in part.
"""

from __future__ import annotations

from clipsearch.errors import UserError
from clipsearch.store import tags
from clipsearch.store.catalog import Catalog, ModelRecord

_NEXT = ("next_model_spec", "next_model_fingerprint", "next_dim", "next_logit_scale")


def refuse_switch(catalog: Catalog, wanted: str, reindex: bool) -> None:
    """Refuse to embed with ``wanted`` into an index whose vectors are of another model, unless ``reindex``: vectors of
    two models in one index would answer every search wrongly. Checked before a model is loaded, and again by
    ``bind``."""
    recorded = catalog.pending_model or catalog.model  # a re-embedding under way is what runs go on with
    if reindex or recorded is None or catalog.count() == 0 or wanted == recorded.spec:
        return
    if catalog.pending_model is not None:
        current = catalog.model.spec if catalog.model else "?"
        raise UserError(f"a re-embedding with --model {recorded.spec} is under way (searches use {current} until it "
                        f"is done): 'clipsearch index' finishes it; to re-embed with {wanted} instead: clipsearch "
                        f"index --reindex --model {wanted}")
    raise UserError(f"this index was built with --model {recorded.spec}; to re-embed everything with {wanted}: "
                    f"clipsearch index --reindex --model {wanted} (or use another --index)")


def bind(catalog: Catalog, record: ModelRecord, reindex: bool) -> bool:
    """Record ``record`` as the model of an empty index, or with ``reindex`` on one that holds photos start a
    re-embedding beside the vectors searches use (True: new vectors go to ``vectors_next`` from now on). In the
    writer's open transaction."""
    refuse_switch(catalog, record.spec, reindex)
    if catalog.model is not None and catalog.count() > 0:
        if not reindex:
            return False  # the same model: nothing to record
        catalog.txn().execute("DELETE FROM vectors_next")  # a re-embedding begun before, with whatever model: again
        for key, value in zip(_NEXT, (record.spec, record.fingerprint, str(record.dim))):
            catalog.set_meta(key, value)
        return True
    for key, value in (("model_spec", record.spec), ("model_fingerprint", record.fingerprint), ("dim", str(record.dim))):
        catalog.set_meta(key, value)
    return False


def swap(catalog: Catalog) -> bool:
    """If a re-embedding is under way and every file's content has its new vector, put the new vectors and model in
    place of the old, in the writer's open transaction (the tags go: they are computed again from the new vectors;
    the index files are rebuilt). True if it swapped."""
    pending = catalog.pending_model
    if pending is None:
        return False
    missing = catalog.conn.execute("SELECT count(*) FROM files WHERE hash NOT IN (SELECT hash FROM vectors_next)")
    if missing.fetchone()[0]:
        return False
    txn = catalog.txn()
    txn.execute("DELETE FROM vectors")
    txn.execute("INSERT INTO vectors SELECT * FROM vectors_next")
    txn.execute("DELETE FROM vectors_next")
    for key, value in (("model_spec", pending.spec), ("model_fingerprint", pending.fingerprint),
                       ("dim", str(pending.dim)), ("logit_scale", catalog.meta("next_logit_scale") or "")):
        catalog.set_meta(key, value)
    txn.execute(f"DELETE FROM meta WHERE key IN ({','.join('?' * len(_NEXT))})", _NEXT)
    if not catalog.meta("logit_scale"):
        txn.execute("DELETE FROM meta WHERE key = 'logit_scale'")
    tags.clear(txn)
    catalog.set_meta("index_built_as", "")  # vectors of another size, maybe: the index files are rebuilt
    return True


def logit_scale_key(catalog: Catalog) -> str:
    """Where the model's logit scale is kept: the re-embedding's model's while one is under way (it takes its place
    with the vectors)."""
    return "next_logit_scale" if catalog.pending_model is not None else "logit_scale"
