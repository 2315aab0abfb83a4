"""`animate-anyone app`'s flags as a person types them: a port of 0, a negative one or a word, an
empty host, --api-url without --deployment, and --deployment where no Prefect server answers, each
refused with its message before Gradio or torch loads."""
from __future__ import annotations


def test_bad_flags_are_refused_before_anything_loads(cli):
    early = cli.without_torch()
    for args, expected in ((["--port", "0"], "'--port': Input should be greater than or equal to 1"),
                           (["--port=-5"], "'--port': Input should be greater than or equal to 1"),
                                                      (["--port", "many"], "'--port': Input should be a valid integer"),
                           (["--host", " "], "--host ' ': not an address"),
                           (["--api-url", "http://127.0.0.1:9/api"], "--api-url is for --deployment"),
                           (["--deployment", "--api-url", "ftp://x"], "not an http(s) URL")):
        out = early("app", *args, check=2)
        assert expected in out.stderr, (args, out.stderr)
    # nothing listens on port 9: said at once, with what to do
    out = early("app", "--deployment", "--api-url", "http://127.0.0.1:9/api", check=2)
    assert "no Prefect server answers at http://127.0.0.1:9/api" in out.stderr, out.stderr
