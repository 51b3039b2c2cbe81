"""The HTTP API's routers (``search.server`` mounts them), each over the application layer (``clipsearch.app``):

    pages     the search page and its assets
    queries   /search (words, like, an image), /classify
    listings  /info, /tags, /cameras, /duplicates
    files     /thumb/ID, /file/ID

A route reads what the server holds from ``request.app.state`` (``state.ServerState``) and shapes nothing
itself: results carry their JSON (``as_dict``), the same that ``--json`` prints.
"""
