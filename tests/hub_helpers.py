"""What the tests' two in-process mocks of the Hub share: reading a commit and serving a stored file."""

import base64
import hashlib
import json

import httpx2


def read_commit(payload: bytes, lfs_objects: dict[str, bytes] | None = None) -> tuple[str, dict[str, bytes]]:
    """The summary and the added files (path -> content) of the NDJSON payload that `create_commit` posts.

    Files uploaded through LFS appear in the payload by their sha256 `oid`, looked up in `lfs_objects`.
    """
    items = [json.loads(line) for line in payload.splitlines() if line.strip()]
    summary = next(item["value"]["summary"] for item in items if item["key"] == "header")
    added = {}
    for item in items:
        if item["key"] == "file":
            added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        elif item["key"] == "lfsFile":
            added[item["value"]["path"]] = (lfs_objects or {})[item["value"]["oid"]]
    return summary, added


def file_response(method: str, content: bytes, commit_sha: str) -> httpx2.Response:
    """The Hub's answer to a HEAD or GET of `/resolve/`: the headers `hf_hub_download` checks, and the content."""
    headers = {
        "X-Repo-Commit": commit_sha,
        "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
        "Content-Length": str(len(content)),
    }
    return httpx2.Response(200, headers=headers, content=b"" if method == "HEAD" else content)
