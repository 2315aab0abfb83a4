"""The web page: `animate-anyone app` (Gradio, the optional extra ``[app]``). :mod:`.service`
does the work and is importable without Gradio; :mod:`.page` lays it out."""
