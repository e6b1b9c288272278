"""`python -m results_service`: serve until SIGINT or SIGTERM."""

from common.app.web import serve
from results_service.main import init_app
from results_service.settings import ResultsSettings

if __name__ == "__main__":
    serve("results_service", ResultsSettings, init_app, lambda s: s.results_port)
