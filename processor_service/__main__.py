"""`python -m processor_service`: serve until SIGINT or SIGTERM."""

from common.app.web import serve
from processor_service.main import init_app
from processor_service.settings import ProcessorSettings

if __name__ == "__main__":
    serve("processor_service", ProcessorSettings, init_app, lambda s: s.processor_port)
