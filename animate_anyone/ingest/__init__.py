"""Ingest: download (yt-dlp), shot detection (PySceneDetect), clip cutting (PyAV)."""
