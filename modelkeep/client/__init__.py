"""The remote registry: the Registry interface over HTTP to a modelkeep server (httpx)."""
