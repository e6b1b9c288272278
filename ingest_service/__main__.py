"""`python -m ingest_service`: serve until SIGINT or SIGTERM."""

from common.app.web import serve
from ingest_service.main import init_app
from ingest_service.settings import IngestSettings

if __name__ == "__main__":
    serve("ingest_service", IngestSettings, init_app, lambda s: s.ingest_port)
