"""`python -m gateway`: serve until SIGINT or SIGTERM."""

from common.app.web import serve
from gateway.main import init_app
from gateway.settings import GatewaySettings

if __name__ == "__main__":
    serve("gateway", GatewaySettings, init_app, lambda s: s.gateway_port)
