"""The sender's side of dicomflow: the library behind `dicomflow upload`, importable by a lab's own scripts.

    from common.uploader import Uploader
    async with Uploader(server, token=token, concurrency=8) as up:
        summary = await up.upload([Path("scan")], atomic=False, wait=True)

One module per concern: `uploader` (the run), `client` (calls to the server, login), `retrying` (the retry
policy of every call), `files` (walking PATHs, streaming files), `resume` (what the server holds already),
`atomic_zip` (the zip built while it is sent), `follow` (`--wait`), `progress`, `summary` (the `--json`
document and exit status), `client_logs` (`--send-log-on-failure`); tags from metadata in `tags`, `metadata`
and `trigger`.
"""

from common.uploader.retrying import RetryPolicy, ServiceUnreachable
from common.uploader.summary import FileReport, Outcome, UploadSummary
from common.uploader.uploader import Uploader

__all__ = ["FileReport", "Outcome", "RetryPolicy", "ServiceUnreachable", "UploadSummary", "Uploader"]
